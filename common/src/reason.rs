//! How operating-system errors read in pmtr's messages: `No such file or
//! directory`, as C programs and the original pmtr print them, without
//! Rust's `(os error 2)` suffix.

use std::fmt;
use std::io;

use nix::errno::Errno;

/// Displays an I/O error as the C library's `strerror` text.
pub struct Reason<'a>(pub &'a io::Error);

impl fmt::Display for Reason<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.raw_os_error() {
            Some(code) => f.write_str(&strerror(code)),
            None => write!(f, "{}", self.0),
        }
    }
}

/// The C library's text for an errno: `Resource temporarily unavailable`.
pub fn strerror(code: i32) -> String {
    let text = io::Error::from_raw_os_error(code).to_string();
    match text.rfind(" (os error ") {
        Some(cut) => text[..cut].to_string(),
        None => text,
    }
}

/// Displays an `Errno` as `strerror` text.
pub struct Text(pub Errno);

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&strerror(self.0 as i32))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn os_errors_read_as_strerror() {
        let error = io::Error::from_raw_os_error(2);
        assert_eq!(Reason(&error).to_string(), "No such file or directory");
        let other = io::Error::other("custom");
        assert_eq!(Reason(&other).to_string(), "custom");
        assert_eq!(
            Text(Errno::EAGAIN).to_string(),
            "Resource temporarily unavailable"
        );
    }
}
