//! The room service over gRPC (filled in below).
