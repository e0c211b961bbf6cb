//! Seed 003's `mail` service, as far as the console needs it: sign-up confirmations
//! and password resets. The default sender writes each message as a file (mode 0600:
//! its link is a secret), which a developer opens and tests read.

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
