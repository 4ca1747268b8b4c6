//! Wall-clock time as people read it, in the local time zone: the
//! `ctime` layout of the status file's header, and RFC 3339 for the
//! timestamps pmtr writes into job output files.

/// The broken-down local time of Unix time `secs`.
#[allow(unsafe_code)] // a libc call, with its SAFETY note
fn local(secs: i64) -> Option<libc::tm> {
    // SAFETY: localtime_r fills the zeroed `tm` we own from a time_t we own;
    // it is the re-entrant form.
    unsafe {
        let mut tm: libc::tm = std::mem::zeroed();
        let time: libc::time_t = secs as libc::time_t;
        (!libc::localtime_r(&time, &mut tm).is_null()).then_some(tm)
    }
}

/// `2026-12-02T19:15:00` and `+01:00` for Unix time `secs`, local time:
/// the two parts of an RFC 3339 time around its fraction of a second.
pub fn rfc3339_local(secs: i64) -> (String, String) {
    let Some(tm) = local(secs) else {
        return (format!("@{secs}"), String::new());
    };
    let date_time = format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    );
    let offset = tm.tm_gmtoff;
    let sign = if offset < 0 { '-' } else { '+' };
    let minutes = offset.abs() / 60;
    (
        date_time,
        format!("{sign}{:02}:{:02}", minutes / 60, minutes % 60),
    )
}

/// `Wed Nov 25 11:24:09 2026` for Unix time `secs`, in the local time zone.
pub fn local_time_text(secs: i64) -> String {
    let Some(tm) = local(secs) else {
        return format!("@{secs}");
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
    fn rfc3339_layout() {
        let (date_time, offset) = rfc3339_local(1_795_000_000);
        assert_eq!(date_time.len(), 19, "{date_time}");
        assert_eq!(&date_time[10..11], "T");
        assert_eq!(offset.len(), 6, "{offset}");
        assert!(offset.starts_with('+') || offset.starts_with('-'));
    }

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
