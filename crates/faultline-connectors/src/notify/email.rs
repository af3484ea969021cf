//! Email over SMTP (lettre): plain text, `Message-ID` built from the alert's idempotency key so
//! mail systems and people can drop repeats. Transient SMTP replies (4xx) and connection
//! failures are retried; permanent ones (5xx) refused.

use std::time::Duration;

use lettre::message::{Mailbox, header::ContentType};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

use super::{Notification, Outcome, plain_text, snippet};

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTls {
    /// Plain text (a local relay only).
    None,
    /// STARTTLS on the submission port (587), required.
    StartTls,
    /// TLS from the first byte (465).
    Tls,
}

#[derive(Clone)]
pub struct Email {
    pub transport: AsyncSmtpTransport<Tokio1Executor>,
    pub from: Mailbox,
    pub to: Vec<Mailbox>,
}

impl std::fmt::Debug for Email {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Email").field("from", &self.from).field("to", &self.to).finish_non_exhaustive()
    }
}

impl Email {
    /// Builds the SMTP transport. `credentials` (user, password) come from the config and the
    /// environment.
    /// `ca_pem`: certificates (PEM) to trust besides the system's, for a relay with a private CA.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        host: &str,
        port: u16,
        tls: EmailTls,
        ca_pem: Option<&str>,
        credentials: Option<(String, String)>,
        from: Mailbox,
        to: Vec<Mailbox>,
        timeout: Duration,
    ) -> Result<Email, String> {
        let parameters = || {
            let mut parameters = TlsParameters::builder(host.to_owned());
            if let Some(pem) = ca_pem {
                let certificate =
                    Certificate::from_pem(pem.as_bytes()).map_err(|e| format!("the CA certificate: {e}"))?;
                parameters = parameters.add_root_certificate(certificate);
            }
            parameters.build_rustls().map_err(|e| format!("smtp host {host}: {e}"))
        };
        let builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(host);
        let builder = match tls {
            EmailTls::None => builder,
            EmailTls::StartTls => builder.tls(Tls::Required(parameters()?)),
            EmailTls::Tls => builder.tls(Tls::Wrapper(parameters()?)),
        };
        let mut builder = builder.port(port).timeout(Some(timeout));
        if let Some((user, password)) = credentials {
            builder = builder.credentials(Credentials::new(user, password));
        }
        Ok(Email { transport: builder.build(), from, to })
    }

    pub async fn send(&self, n: &Notification<'_>) -> Outcome {
        let summary: String = n.payload["summary"]
            .as_str()
            .unwrap_or("alert")
            .chars()
            .filter(|c| !c.is_control())
            .take(200)
            .collect();
        let mut message = Message::builder()
            .from(self.from.clone())
            .subject(format!("[faultline] {summary}"))
            .message_id(Some(format!("<{}@faultline>", n.idempotency_key)))
            .header(ContentType::TEXT_PLAIN);
        for to in &self.to {
            message = message.to(to.clone());
        }
        let message = match message.body(plain_text(n.payload)) {
            Ok(m) => m,
            Err(e) => return Outcome::Rejected { reason: format!("cannot build the email: {e}") },
        };
        match self.transport.send(message).await {
            Ok(_) => Outcome::Sent { reference: None },
            Err(e) if e.is_permanent() => {
                Outcome::Rejected { reason: format!("smtp: {}", snippet(&e.to_string())) }
            }
            Err(e) => Outcome::Retry { after: None, reason: format!("smtp: {}", snippet(&e.to_string())) },
        }
    }
}
