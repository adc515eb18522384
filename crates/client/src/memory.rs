//! Footprint: long-lived processes that use a small part of the `yurt` binary after starting
//! (an executor copying pipes, an idle client agent) keep resident what their start touched,
//! mostly code pages of the binary mapped 64 KiB at a time. [`shed_clean_pages`] gives those
//! back once start-up is over, so what stays resident is what the process goes on using.

/// The read-only file mappings of `/proc/self/smaps` whose resident pages are all clean copies
/// of their file (no private anonymous pages: never written, not relocated): `(start, len)`.
fn sheddable(smaps: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    // The mapping being read: start, length, and whether it qualifies so far.
    let mut current: Option<(usize, usize, bool)> = None;
    let finish = |c: Option<(usize, usize, bool)>, out: &mut Vec<(usize, usize)>| {
        if let Some((start, len, true)) = c {
            out.push((start, len));
        }
    };
    for line in smaps.lines() {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        if let Some((a, b)) = first.split_once('-') {
            if let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
            {
                finish(current.take(), &mut out);
                let perms = fields.next().unwrap_or_default();
                let path = fields.nth(3).unwrap_or_default();
                let file = path.starts_with('/');
                let read_only = perms.as_bytes().get(1) == Some(&b'-');
                current = Some((start, end.saturating_sub(start), file && read_only));
                continue;
            }
        }
        if first == "Anonymous:" && fields.next() != Some("0") {
            if let Some(c) = current.as_mut() {
                c.2 = false;
            }
        }
    }
    finish(current.take(), &mut out);
    out
}

/// Gives back this process's resident pages of read-only file mappings (the `yurt` binary's
/// code and constants, shared libraries), and marks those mappings so that a page touched
/// again comes back alone, not with its neighbours. Only clean pages go: the next access
/// reads the same bytes from the page cache. Errors are ignored (it is an optimisation).
#[allow(unsafe_code)]
pub fn shed_clean_pages() {
    use nix::sys::mman::MmapAdvise;
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return;
    };
    for (start, len) in sheddable(&smaps) {
        let Some(addr) = std::ptr::NonNull::new(start as *mut std::ffi::c_void) else {
            continue;
        };
        // SAFETY: the range is a whole read-only mapping of a file with no private pages, so
        // dropping its pages loses nothing: the next access reads the same bytes from the file.
        // No Rust reference can observe the difference.
        // MADV_RANDOM: a page touched later comes back alone, not with its neighbours.
        for advice in [MmapAdvise::MADV_DONTNEED, MmapAdvise::MADV_RANDOM] {
            let _ = unsafe { nix::sys::mman::madvise(addr, len, advice) };
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn only_clean_read_only_file_mappings_are_shed() {
        let smaps = "\
00200000-00400000 r--p 00000000 fe:00 1 /usr/bin/yurt
Rss:                 100 kB
Anonymous:             0 kB
00400000-00800000 r-xp 00200000 fe:00 1 /usr/bin/yurt
Anonymous:             0 kB
00800000-00900000 r--p 00600000 fe:00 1 /usr/bin/yurt
Anonymous:            12 kB
00900000-00a00000 rw-p 00700000 fe:00 1 /usr/bin/yurt
Anonymous:             0 kB
7f0000000000-7f0000001000 rw-p 00000000 00:00 0
Anonymous:             4 kB
7ffd00000000-7ffd00002000 r-xp 00000000 00:00 0 [vdso]
Anonymous:             0 kB
";
        assert_eq!(
            super::sheddable(smaps),
            vec![(0x200000, 0x200000), (0x400000, 0x400000)]
        );
    }
}
