mod dialog;
mod message;
mod rtp;
mod sdp;
mod speaker;
