//! UDP control datagrams (SPEC 6.2), wire-compatible with the original:
//! `enable NAME [NAME...]`, `disable NAME [NAME...]`; the words `enable`
//! and `disable` switch the mode mid-datagram (`disable a b enable c`).

/// Most bytes of a control datagram read; a longer one is refused.
pub const MAX_DATAGRAM: usize = 2000;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    #[error("longer than {MAX_DATAGRAM} bytes")]
    TooLong,
    #[error("not text")]
    NotText,
    #[error("no enable or disable before `{0}`")]
    NoMode(String),
    #[error("empty")]
    Empty,
}

/// The (job, enabled) requests of a datagram, in order.
pub fn decode(datagram: &[u8]) -> Result<Vec<(String, bool)>, ControlError> {
    if datagram.len() > MAX_DATAGRAM {
        return Err(ControlError::TooLong);
    }
    let text = std::str::from_utf8(datagram).map_err(|_| ControlError::NotText)?;
    if text
        .chars()
        .any(|c| c.is_control() && !c.is_ascii_whitespace())
    {
        return Err(ControlError::NotText);
    }
    let mut mode = None;
    let mut requests = Vec::new();
    for word in text.split_ascii_whitespace() {
        match word {
            "enable" => mode = Some(true),
            "disable" => mode = Some(false),
            name => match mode {
                Some(enabled) => requests.push((name.to_string(), enabled)),
                None => return Err(ControlError::NoMode(name.chars().take(40).collect())),
            },
        }
    }
    if requests.is_empty() {
        return Err(ControlError::Empty);
    }
    Ok(requests)
}

/// The datagram that enables (or disables) `names`.
pub fn encode(enabled: bool, names: &[String]) -> String {
    let verb = if enabled { "enable" } else { "disable" };
    format!("{verb} {}", names.join(" "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_original_forms() {
        assert_eq!(
            decode(b"enable app-server").unwrap(),
            [("app-server".to_string(), true)]
        );
        assert_eq!(
            decode(b"disable a b enable c").unwrap(),
            [
                ("a".to_string(), false),
                ("b".to_string(), false),
                ("c".to_string(), true)
            ]
        );
        assert_eq!(
            decode(b"disable a\n").unwrap(),
            [("a".to_string(), false)],
            "a trailing newline (echo | nc)"
        );
        assert_eq!(encode(true, &["a".into(), "b".into()]), "enable a b");
        assert_eq!(
            decode(encode(false, &["x".into()]).as_bytes()).unwrap(),
            [("x".to_string(), false)]
        );
    }

    #[test]
    fn anything_else_is_invalid() {
        assert_eq!(decode(b"").unwrap_err(), ControlError::Empty);
        assert_eq!(decode(b"enable").unwrap_err(), ControlError::Empty);
        assert_eq!(
            decode(b"web").unwrap_err(),
            ControlError::NoMode("web".into())
        );
        assert_eq!(decode(b"\xff\xfe").unwrap_err(), ControlError::NotText);
        assert_eq!(decode(b"enable a\x00b").unwrap_err(), ControlError::NotText);
        assert_eq!(
            decode(&vec![b'a'; MAX_DATAGRAM + 1]).unwrap_err(),
            ControlError::TooLong
        );
    }
}
