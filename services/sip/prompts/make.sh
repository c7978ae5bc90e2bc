#!/usr/bin/env bash
# Makes the voice prompts a dial-in caller hears (Ogg Opus, mono, 20 ms packets),
# from text, with espeak-ng and opus-tools (Debian packages espeak-ng, opus-tools).
# The files are committed: building and running Confer needs neither tool.
# Run it again after changing a line below; the bridge embeds the files at build time.
set -euo pipefail
cd "$(dirname "$0")"
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
say() {
  espeak-ng -v en-us -s 160 -w "$scratch/$1.wav" "$2"
  opusenc --quiet --bitrate 24 --framesize 20 --downmix-mono --speech \
    --serial 1 --padding 0 --discard-comments "$scratch/$1.wav" "$1.opus"
}
say recording-started "This call is being recorded."
say recording-stopped "Recording has stopped."
say muted "You are muted. Press star six to unmute."
say unmuted "You are unmuted."
say mute-refused "A host has muted you."
say hand-raised "Your hand is raised."
say hand-lowered "Your hand is lowered."
