//! Which header names the client when a connection comes through a trusted proxy.

/// The header a trusted proxy names the client in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClientIpHeader {
    /// `X-Forwarded-For`, appended to by nginx (`$proxy_add_x_forwarded_for`), HAProxy, cloud
    /// load balancers and ingress controllers.
    XForwardedFor,
    /// `X-Real-IP`, for a proxy that sets it and leaves a client's `X-Forwarded-For` as sent.
    XRealIp,
}

impl ClientIpHeader {
    pub fn name(self) -> &'static str {
        match self {
            Self::XForwardedFor => "x-forwarded-for",
            Self::XRealIp => "x-real-ip",
        }
    }
}
