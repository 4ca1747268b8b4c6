//! Wall-clock time as people read it: the local time of the status file's
//! header, in the C library's `ctime` layout.

/// `Wed Nov 25 11:24:09 2026` for Unix time `secs`, in the local time zone.
#[allow(unsafe_code)] // the one libc call of this crate, with its SAFETY note
pub fn local_time_text(secs: i64) -> String {
    // SAFETY: localtime_r fills the zeroed `tm` we own from a time_t we own;
    // it is the re-entrant form.
    let tm = unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let time: libc::time_t = secs as libc::time_t;
        if libc::localtime_r(&time, &mut tm).is_null() {
            return format!("@{secs}");
        }
        tm
    };
    const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS.get(tm.tm_wday as usize).unwrap_or(&"???"),
        MONTHS.get(tm.tm_mon as usize).unwrap_or(&"???"),
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        tm.tm_year + 1900
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_layout() {
        let text = local_time_text(1_795_000_000);
        let fields: Vec<&str> = text.split_whitespace().collect();
        assert_eq!(fields.len(), 5, "{text}");
        assert!(
            fields[3].len() == 8 && fields[3].matches(':').count() == 2,
            "{text}"
        );
        assert_eq!(fields[4].len(), 4);
    }
}
