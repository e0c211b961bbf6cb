//! Seed 003's `mail` service, as far as the console needs it: sign-up confirmations
//! and password resets, through an SMTP server (`[console.smtp]`, with the `lettre`
//! crate) or, by default, written as files (mode 0600: a link is a secret) that a
//! developer opens and tests read.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

/// One message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mail {
    /// The recipient.
    pub to: String,
    /// Its subject.
    pub subject: String,
    /// Its text.
    pub body: String,
}

/// Sends mail.
#[async_trait::async_trait]
pub trait Mailer: Send + Sync {
    /// Sends `mail`, or says why not.
    async fn send(&self, mail: Mail) -> anyhow::Result<()>;
}

/// Writes each message to a file in a directory.
pub struct DirMailer {
    dir: PathBuf,
}

impl DirMailer {
    /// Messages go to `dir` (made, mode 0700, if missing).
    pub fn new(dir: PathBuf) -> anyhow::Result<DirMailer> {
        std::fs::create_dir_all(&dir)?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        Ok(DirMailer { dir })
    }
}

#[async_trait::async_trait]
impl Mailer for DirMailer {
    async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis())
            .unwrap_or(0);
        let path = self
            .dir
            .join(format!("{ms:015}-{:08x}.txt", rand::random::<u32>()));
        // Header lines come from our own text and a checked email: no line breaks.
        let text = format!(
            "To: {}\nSubject: {}\n\n{}\n",
            mail.to.replace(['\r', '\n'], ""),
            mail.subject.replace(['\r', '\n'], ""),
            mail.body
        );
        tokio::task::spawn_blocking(move || -> anyhow::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            Ok(())
        })
        .await??;
        tracing::info!(subject = %mail.subject, dir = %self.dir.display(), "mail written");
        Ok(())
    }
}

/// How the SMTP connection is protected.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Security {
    /// STARTTLS, required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
    /// None: only for a relay on the same host or a test server.
    None,
}

/// The `[console.smtp]` section. The password comes from `ORBIT_SMTP_PASSWORD`, never
/// the file.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpSection {
    /// The server's host name.
    pub host: String,
    /// Its port (default: 587, or 465 with `security = "tls"`).
    #[serde(default)]
    pub port: Option<u16>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub security: Security,
    /// The user to log in as; empty: no login.
    #[serde(default)]
    pub username: String,
    /// The sender, `Name <address>` or an address.
    pub from: String,
}

/// Sends through an SMTP server.
pub struct SmtpMailer {
    transport: lettre::AsyncSmtpTransport<lettre::Tokio1Executor>,
    from: lettre::message::Mailbox,
}

impl SmtpMailer {
    /// A sender through the server `section` names, logging in with `password`.
    pub fn new(section: &SmtpSection, password: Option<String>) -> anyhow::Result<SmtpMailer> {
        use lettre::transport::smtp::authentication::Credentials;
        type T = lettre::AsyncSmtpTransport<lettre::Tokio1Executor>;
        let builder = match section.security {
            Security::Starttls => {
                T::starttls_relay(&section.host)?.port(section.port.unwrap_or(587))
            }
            Security::Tls => T::relay(&section.host)?.port(section.port.unwrap_or(465)),
            Security::None => T::builder_dangerous(&section.host).port(section.port.unwrap_or(25)),
        };
        let builder = match (section.username.as_str(), password) {
            ("", _) => builder,
            (user, Some(p)) => builder.credentials(Credentials::new(user.to_string(), p)),
            (_, None) => anyhow::bail!(
                "[console.smtp] username is set: give its password in ORBIT_SMTP_PASSWORD"
            ),
        };
        let from = section
            .from
            .parse()
            .map_err(|e| anyhow::anyhow!("[console.smtp] from {:?}: {e}", section.from))?;
        Ok(SmtpMailer {
            transport: builder
                .timeout(Some(std::time::Duration::from_secs(20)))
                .build(),
            from,
        })
    }
}

#[async_trait::async_trait]
impl Mailer for SmtpMailer {
    async fn send(&self, mail: Mail) -> anyhow::Result<()> {
        use lettre::AsyncTransport;
        let message = lettre::Message::builder()
            .from(self.from.clone())
            .to(mail.to.parse()?)
            .subject(mail.subject.clone())
            .header(lettre::message::header::ContentType::TEXT_PLAIN)
            .body(mail.body)?;
        self.transport.send(message).await?;
        tracing::info!(subject = %mail.subject, "mail sent");
        Ok(())
    }
}
