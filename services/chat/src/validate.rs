//! Checks on what members send, before anything is stored.

use crate::api::{ChatAction, DEFAULT_PAGE, MAX_CLIENT_ID, MAX_PAGE, MAX_TEXT_CHARS, Page};
use crate::error::{ChatError, ChatResult};

pub(crate) fn text(text: &str) -> ChatResult<()> {
    if text.trim().is_empty() {
        return Err(ChatError::invalid("invalid_message", "chat text is empty"));
    }
    if text.chars().count() > MAX_TEXT_CHARS {
        return Err(ChatError::invalid(
            "message_too_long",
            format!("chat text is longer than {MAX_TEXT_CHARS} characters"),
        ));
    }
    if text
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t')
    {
        return Err(ChatError::invalid(
            "invalid_message",
            "chat text contains control characters",
        ));
    }
    Ok(())
}

pub(crate) fn client_id(id: &str) -> ChatResult<()> {
    if id.len() > MAX_CLIENT_ID
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(ChatError::invalid(
            "invalid_client_id",
            format!("client_id must be up to {MAX_CLIENT_ID} letters, digits, `-` or `_`"),
        ));
    }
    Ok(())
}

/// What the chat service would refuse a member's post (`action` under `client_id`)
/// for, before anything is stored: a gateway asks before the sender's slow-mode turn
/// is taken, so a message refused for what it is costs no turn.
pub fn post(action: &ChatAction, client_id: &str) -> ChatResult<()> {
    self::action(action)?;
    self::client_id(client_id)
}

pub(crate) fn action(action: &ChatAction) -> ChatResult<()> {
    match action {
        ChatAction::Text { text: t, .. } => text(t),
        ChatAction::File { name, .. } => text(name),
        ChatAction::Edit { seq, text: t } => {
            target(*seq)?;
            text(t)
        }
        ChatAction::Delete { seq } => target(*seq),
    }
}

fn target(seq: u64) -> ChatResult<()> {
    if seq == 0 {
        return Err(ChatError::invalid(
            "invalid_message",
            "seq names no message",
        ));
    }
    Ok(())
}

/// A page with its limit clamped to 1..=MAX_PAGE (0 means the default).
pub(crate) fn page(page: Page) -> Page {
    let clamp = |limit: u32| match limit {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    };
    match page {
        Page::Before { before, limit } => Page::Before {
            before,
            limit: clamp(limit),
        },
        Page::After { after, limit } => Page::After {
            after,
            limit: clamp(limit),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_rules() {
        assert!(text("hello 👋").is_ok());
        assert_eq!(text("  ").unwrap_err().code, "invalid_message");
        assert_eq!(
            text(&"x".repeat(MAX_TEXT_CHARS + 1)).unwrap_err().code,
            "message_too_long"
        );
        assert!(text(&"é".repeat(MAX_TEXT_CHARS)).is_ok());
        assert_eq!(text("a\u{0}b").unwrap_err().code, "invalid_message");
    }

    #[test]
    fn client_id_rules() {
        assert!(client_id("").is_ok());
        assert!(client_id("msg-1_A").is_ok());
        assert!(client_id("a b").is_err());
        assert!(client_id(&"a".repeat(MAX_CLIENT_ID + 1)).is_err());
    }

    #[test]
    fn page_limits_are_clamped() {
        assert_eq!(
            page(Page::Before {
                before: 0,
                limit: 0
            }),
            Page::Before {
                before: 0,
                limit: DEFAULT_PAGE
            }
        );
        assert_eq!(
            page(Page::After {
                after: 3,
                limit: 10_000
            }),
            Page::After {
                after: 3,
                limit: MAX_PAGE
            }
        );
    }
}
