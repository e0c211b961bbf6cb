//! Mail through a real SMTP server (Python's aiosmtpd, which scripts/setup.sh
//! installs), delivering into a Maildir the test reads.

use orbit_console::mail::{Mail, Mailer, Security, SmtpMailer, SmtpSection};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

struct Server {
    child: Child,
    port: u16,
    maildir: tempfile::TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn smtp_server() -> Server {
    let maildir = tempfile::tempdir().unwrap();
    let port = orbit_testkit::free_port();
    let child = Command::new("python3")
        .args(["-m", "aiosmtpd", "-n", "-l", &format!("127.0.0.1:{port}")])
        .args(["-c", "aiosmtpd.handlers.Mailbox"])
        .arg(maildir.path().join("box"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 with aiosmtpd (scripts/setup.sh installs it)");
    let deadline = Instant::now() + Duration::from_secs(20);
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "aiosmtpd did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Server {
        child,
        port,
        maildir,
    }
}

fn section(port: u16, security: Security) -> SmtpSection {
    SmtpSection {
        host: "127.0.0.1".into(),
        port: Some(port),
        security,
        username: String::new(),
        from: "orbit <noreply@example.org>".into(),
    }
}

fn delivered(s: &Server) -> Vec<String> {
    let new = s.maildir.path().join("box").join("new");
    std::fs::read_dir(new)
        .map(|d| {
            d.map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn mail_reaches_a_real_smtp_server_and_is_never_sent_in_the_clear_unasked() {
    let server = smtp_server().await;
    let mail = Mail {
        to: "ada@example.org".into(),
        subject: "Confirm your orbit account".into(),
        body: "Open this link:\n\nhttp://127.0.0.1:1/confirm?token=abc\n".into(),
    };
    // The default, STARTTLS, is required: this server offers none, so nothing goes.
    let strict = SmtpMailer::new(&section(server.port, Security::Starttls), None).unwrap();
    assert!(strict.send(mail.clone()).await.is_err());
    assert!(delivered(&server).is_empty());
    // A login needs its password from the environment.
    let mut with_user = section(server.port, Security::None);
    with_user.username = "orbit".into();
    let e = SmtpMailer::new(&with_user, None).err().unwrap().to_string();
    assert!(e.contains("ORBIT_SMTP_PASSWORD"), "{e}");
    // Asked for plain SMTP (a local relay), it is delivered.
    let plain = SmtpMailer::new(&section(server.port, Security::None), None).unwrap();
    plain.send(mail).await.unwrap();
    let got = delivered(&server);
    assert_eq!(got.len(), 1);
    let m = &got[0];
    for want in [
        "To: ada@example.org",
        "From: orbit <noreply@example.org>",
        "Subject: Confirm your orbit account",
        "confirm?token=abc",
    ] {
        assert!(m.contains(want), "{want:?} not in {m}");
    }
}
