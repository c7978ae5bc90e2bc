mod dialog;
mod keypad;
mod message;
mod rtp;
mod sdp;
mod speaker;
