mod dialog;
mod message;
mod network;
mod rtp;
mod sdp;
mod speaker;
