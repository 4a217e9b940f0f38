//! SMTP delivery with `lettre`'s connection type over sockets we open
//! ourselves, so `TCP_NODELAY` is set: lettre 0.11.23 does not set it, and
//! every message then waited ~40 ms on the server's delayed ACK.
//!
//! A small pool keeps idle connections for reuse. A reused connection that
//! the server closed while idle fails on first use; the message is then
//! retried once on a fresh connection.

use crate::config::{SmtpConfig, SmtpTls};
use lettre::address::Envelope;
use lettre::transport::smtp::authentication::{Credentials, Mechanism};
use lettre::transport::smtp::client::{
    AsyncSmtpConnection, AsyncTokioStream, Certificate, CertificateStore, TlsParameters,
};
use lettre::transport::smtp::extension::ClientId;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

/// Why the SMTP client could not be set up from the config.
#[derive(Debug, thiserror::Error)]
pub enum SmtpSetupError {
    #[error("mail.ca_file {}", path.display())]
    CaFile {
        path: std::path::PathBuf,
        #[source]
        source: crate::tls::TlsError,
    },
    #[error("mail.ca_file {}", path.display())]
    Certificate {
        path: std::path::PathBuf,
        #[source]
        source: lettre::transport::smtp::Error,
    },
    #[error("STARTTLS parameters")]
    StartTls(#[source] lettre::transport::smtp::Error),
    #[error("mail TLS")]
    Tls(#[source] crate::tls::TlsError),
}

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Try again later: 4xx, connection refused, timeout, TLS trouble.
    #[error("{0}")]
    Temporary(String),
    /// The server said no for good (5xx).
    #[error("{0}")]
    Permanent(String),
}

impl From<lettre::transport::smtp::Error> for SendError {
    fn from(e: lettre::transport::smtp::Error) -> Self {
        if e.is_permanent() {
            SendError::Permanent(e.to_string())
        } else {
            SendError::Temporary(e.to_string())
        }
    }
}

/// Idle connections are closed after this long.
const MAX_IDLE: Duration = Duration::from_secs(60);

pub struct SmtpPool {
    cfg: SmtpConfig,
    hello: ClientId,
    starttls: Option<TlsParameters>,
    implicit: Option<tokio_rustls::TlsConnector>,
    idle: Mutex<Vec<(AsyncSmtpConnection, Instant)>>,
}

impl SmtpPool {
    pub fn new(cfg: &SmtpConfig) -> Result<SmtpPool, SmtpSetupError> {
        let hello = match &cfg.hello_name {
            Some(h) => ClientId::Domain(h.clone()),
            None => ClientId::default(),
        };
        let (mut starttls, mut implicit) = (None, None);
        match cfg.tls {
            SmtpTls::StartTls => {
                let mut b = TlsParameters::builder(cfg.host.clone());
                if let Some(ca) = &cfg.ca_file {
                    b = b.certificate_store(CertificateStore::None);
                    let certs =
                        crate::tls::pem_certs(ca).map_err(|source| SmtpSetupError::CaFile {
                            path: ca.clone(),
                            source,
                        })?;
                    for c in certs {
                        let c = Certificate::from_der(c.to_vec()).map_err(|source| {
                            SmtpSetupError::Certificate {
                                path: ca.clone(),
                                source,
                            }
                        })?;
                        b = b.add_root_certificate(c);
                    }
                }
                starttls = Some(b.build_rustls().map_err(SmtpSetupError::StartTls)?);
            }
            SmtpTls::Implicit => {
                let config = crate::tls::client_config(cfg.ca_file.as_deref())
                    .map_err(SmtpSetupError::Tls)?;
                implicit = Some(tokio_rustls::TlsConnector::from(config));
            }
            SmtpTls::None => {}
        }
        Ok(SmtpPool {
            cfg: cfg.clone(),
            hello,
            starttls,
            implicit,
            idle: Mutex::new(Vec::new()),
        })
    }

    async fn connect(&self) -> Result<AsyncSmtpConnection, SendError> {
        let tcp = TcpStream::connect((self.cfg.host.as_str(), self.cfg.port))
            .await
            .map_err(|e| {
                SendError::Temporary(format!(
                    "connect to {}:{}: {e}",
                    self.cfg.host, self.cfg.port
                ))
            })?;
        tcp.set_nodelay(true)
            .map_err(|e| SendError::Temporary(format!("TCP_NODELAY: {e}")))?;
        let stream: Box<dyn AsyncTokioStream> = match &self.implicit {
            Some(tls) => {
                let name = rustls::pki_types::ServerName::try_from(self.cfg.host.clone())
                    .map_err(|e| SendError::Temporary(format!("TLS server name: {e}")))?;
                let s = tls
                    .connect(name, tcp)
                    .await
                    .map_err(|e| SendError::Temporary(format!("TLS: {e}")))?;
                Box::new(Tls(s))
            }
            None => Box::new(tcp),
        };
        let mut conn = AsyncSmtpConnection::connect_with_transport(stream, &self.hello).await?;
        if let Some(params) = &self.starttls {
            // A server that does not offer STARTTLS gets nothing in clear.
            conn.starttls(params.clone(), &self.hello)
                .await
                .map_err(|e| SendError::Temporary(format!("STARTTLS: {e}")))?;
        }
        if let (Some(user), Some(secret)) = (&self.cfg.username, &self.cfg.password) {
            let password = secret
                .read()
                .map_err(|e| SendError::Temporary(crate::model::chain(&e)))?;
            let creds = Credentials::new(user.clone(), password);
            conn.auth(&[Mechanism::Plain, Mechanism::Login], &creds)
                .await
                .map_err(|e| SendError::Temporary(format!("AUTH: {e}")))?;
        }
        Ok(conn)
    }

    fn take_idle(&self) -> Option<AsyncSmtpConnection> {
        let mut idle = self.idle.lock().ok()?;
        while let Some((c, at)) = idle.pop() {
            if at.elapsed() < MAX_IDLE && !c.has_broken() {
                return Some(c);
            }
        }
        None
    }

    fn put_idle(&self, c: AsyncSmtpConnection) {
        if c.has_broken() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < self.cfg.pool_size as usize {
                idle.push((c, Instant::now()));
            }
        }
    }

    /// Sends one message; bounded by the configured timeout per attempt.
    pub async fn send(&self, envelope: &Envelope, bytes: &[u8]) -> Result<(), SendError> {
        if let Some(mut c) = self.take_idle() {
            match self.timed(&mut c, envelope, bytes).await {
                Ok(()) => {
                    self.put_idle(c);
                    return Ok(());
                }
                // A 5xx is the server's answer, not a dead connection.
                Err(SendError::Permanent(e)) => return Err(SendError::Permanent(e)),
                // Closed while idle (or broken): once more on a new connection.
                Err(e) => {
                    tracing::debug!(error = %e, "reused SMTP connection failed; reconnecting")
                }
            }
        }
        let mut c = tokio::time::timeout(self.cfg.timeout, self.connect())
            .await
            .map_err(|_| {
                SendError::Temporary("timed out connecting to the mail server".into())
            })??;
        let r = self.timed(&mut c, envelope, bytes).await;
        if r.is_ok() {
            self.put_idle(c);
        }
        r
    }

    async fn timed(
        &self,
        c: &mut AsyncSmtpConnection,
        envelope: &Envelope,
        bytes: &[u8],
    ) -> Result<(), SendError> {
        match tokio::time::timeout(self.cfg.timeout, c.send(envelope, bytes)).await {
            Ok(r) => r.map(|_| ()).map_err(SendError::from),
            Err(_) => {
                c.abort().await;
                Err(SendError::Temporary(
                    "timed out talking to the mail server".into(),
                ))
            }
        }
    }

    /// Says QUIT on every idle connection.
    pub async fn close(&self) {
        let idle: Vec<_> = match self.idle.lock() {
            Ok(mut v) => v.drain(..).collect(),
            Err(_) => return,
        };
        for (mut c, _) in idle {
            let _ = tokio::time::timeout(Duration::from_secs(2), c.quit()).await;
        }
    }
}

/// A TLS stream lettre can drive (it wants its own stream trait).
#[derive(Debug)]
struct Tls(tokio_rustls::client::TlsStream<TcpStream>);

impl AsyncRead for Tls {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Tls {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl AsyncTokioStream for Tls {
    fn peer_addr(&self) -> std::io::Result<std::net::SocketAddr> {
        self.0.get_ref().0.peer_addr()
    }
}

/// Shared by the worker's tasks.
pub type SharedPool = Arc<SmtpPool>;
