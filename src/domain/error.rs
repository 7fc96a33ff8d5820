//! The error every layer returns; `code()` maps it to the wire's error codes in one place.

use serde::Serialize;

/// Wire error codes, exactly as the contract names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, strum::IntoStaticStr, strum::EnumString)]
#[serde(rename_all = "snake_case")]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    UnknownEvent,
    Unauthorized,
    Forbidden,
    NotFound,
    Conflict,
    Busy,
    RateLimited,
    TooLarge,
    Unavailable,
    Internal,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("unknown event `{0}`")]
    UnknownEvent(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Busy(String),
    #[error("too many requests; slow down")]
    RateLimited,
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unavailable(String),
    /// Details go to the log, never to the client.
    #[error("internal error")]
    Internal,
}

impl Error {
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadRequest(_) => ErrorCode::BadRequest,
            Self::UnknownEvent(_) => ErrorCode::UnknownEvent,
            Self::Unauthorized(_) => ErrorCode::Unauthorized,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::NotFound(_) => ErrorCode::NotFound,
            Self::Conflict(_) => ErrorCode::Conflict,
            Self::Busy(_) => ErrorCode::Busy,
            Self::RateLimited => ErrorCode::RateLimited,
            Self::TooLarge(_) => ErrorCode::TooLarge,
            Self::Unavailable(_) => ErrorCode::Unavailable,
            Self::Internal => ErrorCode::Internal,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::BadRequest(message.into())
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden(message.into())
    }

    /// A block between two users refuses what one does to the other: one answer whichever of
    /// them blocked, so that neither learns more.
    pub fn blocked() -> Self {
        Self::forbidden("blocked")
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound(message.into())
    }
}
