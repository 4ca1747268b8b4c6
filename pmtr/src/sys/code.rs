//! Giving back the resident pages of code and read-only data — pmtr's
//! and its libraries' — once a spell of work is over (docs/PERFORMANCE.md,
//! "Fixed memory"). Start-up and a reload run the parser, the validator
//! and the diff, most of the code pmtr runs at all, and those pages would
//! stay mapped while pmtr idles for days. Dropped, the next turns fault
//! back in from the page cache only what they run, which the code order
//! (pmtr/code-order.txt) keeps together.

use std::ops::Range;

/// Drops the page-table entries of the code and read-only data of pmtr
/// and its libraries: resident memory becomes what pmtr runs from now
/// on; the pages stay in the page cache for every other process. Best
/// effort: on any failure the pages just stay. Never inlined:
/// `bench/code_order.py` finds the moment of the drop by its name.
#[inline(never)]
pub fn release_code_pages() {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for range in clean_file_mappings(&smaps) {
        // SAFETY: `range` is a whole mapping of a file (pmtr's executable
        // or a library), private, without write permission, and none of
        // its pages is a private copy (smaps: `Anonymous: 0 kB`;
        // unwritable, none can become one): every page is the file's,
        // and the kernel repopulates it from the file at the next fault
        // (madvise(2), MADV_DONTNEED on a private file mapping). Code
        // running in it meanwhile — this function, another thread, a
        // child sharing the memory — only faults.
        unsafe {
            libc::madvise(
                range.start as *mut libc::c_void,
                range.end - range.start,
                libc::MADV_DONTNEED,
            );
        }
    }
}

/// One mapping of `/proc/PID/smaps`.
struct Mapping<'a> {
    range: Range<usize>,
    perms: &'a str,
    path: &'a str,
    /// Pages that are private copies (written since mapped), in KiB.
    anonymous_kib: Option<u64>,
}

/// The unwritable mappings of files whose pages are all the file's:
/// pmtr's own code and read-only data, and its libraries'.
fn clean_file_mappings(smaps: &str) -> Vec<Range<usize>> {
    parse(smaps)
        .into_iter()
        .filter(|m| m.path.starts_with('/') && matches!(m.perms, "r-xp" | "r--p"))
        .filter(|m| m.anonymous_kib == Some(0))
        .map(|m| m.range)
        .collect()
}

fn parse(smaps: &str) -> Vec<Mapping<'_>> {
    let mut mappings: Vec<Mapping> = Vec::new();
    for line in smaps.lines() {
        if let Some(kib) = line.strip_prefix("Anonymous:") {
            if let Some(mapping) = mappings.last_mut() {
                let kib = kib.trim().trim_end_matches("kB").trim();
                mapping.anonymous_kib = kib.parse().ok();
            }
        } else if let Some(mapping) = header(line) {
            mappings.push(mapping);
        }
    }
    mappings
}

/// A mapping's first line: the range, the permissions and the path.
fn header(line: &str) -> Option<Mapping<'_>> {
    let mut fields = line.splitn(6, ' ');
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?;
    let path = fields.nth(3).map(str::trim_start).unwrap_or("");
    Some(Mapping {
        range: start..end,
        perms,
        path,
        anonymous_kib: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn smaps(lines: &[(&str, &str, u64)]) -> String {
        lines
            .iter()
            .map(|(range, rest, anonymous)| {
                format!("{range} {rest}\nSize: 4 kB\nAnonymous: {anonymous} kB\nVmFlags: rd\n")
            })
            .collect()
    }

    fn machine() -> String {
        smaps(&[
            (
                "55d0c0000000-55d0c0052000",
                "r--p 00000000 fd:01 1234    /usr/sbin/pmtr",
                0,
            ),
            (
                "55d0c0052000-55d0c01c4000",
                "r-xp 00051000 fd:01 1234    /usr/sbin/pmtr",
                0,
            ),
            (
                "55d0c01c4000-55d0c01f0000",
                "r--p 001c2000 fd:01 1234    /usr/sbin/pmtr",
                48,
            ),
            (
                "55d0c01f0000-55d0c01f1000",
                "rw-p 001ed000 fd:01 1234    /usr/sbin/pmtr",
                0,
            ),
            (
                "55d0c2000000-55d0c2100000",
                "rw-p 00000000 00:00 0       [heap]",
                1024,
            ),
            (
                "7f0000000000-7f0000028000",
                "r--p 00000000 fd:01 99      /usr/lib/libc.so.6",
                0,
            ),
            (
                "7f0000028000-7f00001bd000",
                "r-xp 00028000 fd:01 99      /usr/lib/libc.so.6",
                0,
            ),
            (
                "7ffd00000000-7ffd00021000",
                "rw-p 00000000 00:00 0       [stack]",
                132,
            ),
        ])
    }

    #[test]
    fn the_unwritten_unwritable_mappings_of_files() {
        assert_eq!(
            clean_file_mappings(&machine()),
            vec![
                0x55d0c0000000..0x55d0c0052000,
                0x55d0c0052000..0x55d0c01c4000,
                0x7f0000000000..0x7f0000028000,
                0x7f0000028000..0x7f00001bd000,
            ],
            "not relocated read-only data (private copies), writable data, the heap or the stack"
        );
    }

    #[test]
    fn a_mapping_whose_copies_are_not_counted_is_kept() {
        let text = machine().replace("Anonymous: 0 kB", "Anonymous: ? kB");
        assert!(clean_file_mappings(&text).is_empty());
    }

    #[test]
    fn the_real_smaps_hold_this_function_in_a_clean_mapping() {
        let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
        let here = release_code_pages as *const () as usize;
        let clean = clean_file_mappings(&smaps);
        assert!(clean.iter().any(|range| range.contains(&here)), "{clean:?}");
    }
}
