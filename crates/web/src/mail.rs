//! Mail Portcullis sends: a password reset link, to the address the directory has for the
//! user, through the configured SMTP relay (`[smtp]`).

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};
use portcullis_core::config::{SmtpConfig, SmtpSecurity};
use portcullis_core::{Email, Failure, FailureKind, Timestamp};

pub struct Mailer {
    transport: AsyncSmtpTransport<Tokio1Executor>,
    from: Mailbox,
    relay: String,
}

impl Mailer {
    /// The mailer for `config`; the error says which setting is wrong.
    pub fn new(config: &SmtpConfig) -> Result<Self, String> {
        let from: Mailbox = config
            .from
            .parse()
            .map_err(|e| format!("smtp.from {:?}: {e}", config.from))?;
        let mut tls = TlsParameters::builder(config.host.clone());
        if let Some(path) = &config.ca_file {
            let pem =
                std::fs::read(path).map_err(|e| format!("smtp.ca_file {}: {e}", path.display()))?;
            let certificate = Certificate::from_pem(&pem)
                .map_err(|e| format!("smtp.ca_file {}: {e}", path.display()))?;
            tls = tls.add_root_certificate(certificate);
        }
        let tls = tls
            .build_rustls()
            .map_err(|e| format!("smtp: the TLS settings for {}: {e}", config.host))?;
        let mut builder =
            AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(config.host.as_str())
                .port(config.port())
                .timeout(Some(config.timeout))
                .tls(match config.security {
                    SmtpSecurity::Starttls => Tls::Required(tls),
                    SmtpSecurity::Tls => Tls::Wrapper(tls),
                    SmtpSecurity::None => Tls::None,
                });
        if let (Some(user), Some(password)) = (&config.username, &config.password) {
            builder = builder.credentials(Credentials::new(user.clone(), password.clone()));
        }
        Ok(Mailer {
            transport: builder.build(),
            from,
            relay: format!("{}:{}", config.host, config.port()),
        })
    }

    /// Sends `to` the reset link `url`, working until `expires_at`.
    pub async fn send_reset_link(
        &self,
        to: &Email,
        name: &str,
        url: &str,
        expires_at: Timestamp,
    ) -> Result<(), Failure> {
        let address: lettre::Address = to.to_string().parse().map_err(|e| {
            Failure::bad_request(format!("the address {to} cannot receive mail: {e}"))
        })?;
        let recipient = Mailbox::new(Some(name.to_owned()), address);
        let body = format!(
            "Hello {name},\n\n\
             an administrator made a link for you to choose a new password:\n\n{url}\n\n\
             It works once, until {} UTC. Setting the password ends every session of your account.\n\
             If you did not expect this, tell your administrator and do not use the link.\n",
            expires_at.utc()
        );
        let message = Message::builder()
            .from(self.from.clone())
            .to(recipient)
            .subject("Choose a new password")
            .header(ContentType::TEXT_PLAIN)
            .body(body)
            .map_err(|e| Failure::internal(format!("the reset mail could not be built: {e}")))?;
        self.transport.send(message).await.map(drop).map_err(|e| {
            Failure::new(
                FailureKind::UpstreamUnavailable,
                format!("The reset link could not be sent through {}: {e}", self.relay),
            )
            .with_hint("check [smtp] (host, port, security, credentials), or make the link without sending it and pass it on yourself")
        })
    }
}
