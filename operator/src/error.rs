//! The operator's errors, each with a CamelCase reason for conditions and metrics.

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("the resource has no namespace")]
    NoNamespace,
    #[error("SFU control API at {address}: {message}")]
    NodeControl { address: String, message: String },
    #[error("room service: {0}")]
    RoomService(#[from] confer_room::RoomError),
    #[error("password secret: {0}")]
    Secret(String),
    #[error("finalizer: {0}")]
    Finalizer(String),
    #[error("chat service: {0}")]
    ChatService(String),
}

impl Error {
    /// A bounded label: the kind of failure, never an object name.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(status)) if status.code == 409 => "Conflict",
            Self::Kube(kube::Error::Api(status)) if status.code >= 500 => "ApiServerError",
            Self::Kube(kube::Error::Api(_)) => "ApiRejected",
            Self::Kube(_) => "ApiUnreachable",
            Self::NoNamespace => "NoNamespace",
            Self::NodeControl { .. } => "NodeUnreachable",
            Self::RoomService(error) if error.kind == confer_room::ErrorKind::Unavailable => {
                "RoomServiceUnavailable"
            }
            Self::RoomService(_) => "RoomServiceRejected",
            Self::Secret(_) => "SecretInvalid",
            Self::Finalizer(_) => "FinalizerFailed",
            Self::ChatService(_) => "ChatServiceFailed",
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
