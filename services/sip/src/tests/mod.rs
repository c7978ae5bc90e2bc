mod dialog;
mod keypad;
mod message;
mod prompt;
mod rtp;
mod sdp;
mod signal;
mod speaker;
