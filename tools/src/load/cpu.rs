//! CPU time of a process from /proc: the server's (`--server-pid`) and the load tool's own, so
//! the report can divide server CPU by forwarded packets and show when the tool is the limit.

use std::fs;

/// Total CPU time (user + system, all threads) of `pid` in nanoseconds.
///
/// Sums the first field of every `/proc/<pid>/task/*/schedstat` (on-CPU ns, exact); falls back
/// to `utime + stime` from `/proc/<pid>/stat` (clock ticks) when schedstats are unavailable.
/// Threads that exited are missing from the task list, so a sample taken across a thread's exit
/// can go backwards — callers clamp deltas at zero.
pub fn process_cpu_ns(pid: u32) -> Option<u64> {
    schedstat_ns(pid).or_else(|| stat_ns(pid))
}

fn schedstat_ns(pid: u32) -> Option<u64> {
    let dir = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0u64;
    let mut any = false;
    for entry in dir.flatten() {
        let path = entry.path().join("schedstat");
        let Ok(text) = fs::read_to_string(path) else {
            continue;
        };
        if let Some(ns) = text
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
        {
            total += ns;
            any = true;
        }
    }
    any.then_some(total)
}

fn stat_ns(pid: u32) -> Option<u64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: fields start after the last ')'.
    let rest = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(0) ... utime is field 14 of the line, i.e. index 11 here, stime 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let hz = u64::try_from(hz).ok().filter(|h| *h > 0)?;
    Some((utime + stime) * 1_000_000_000 / hz)
}

/// This process's CPU time in nanoseconds.
pub fn own_cpu_ns() -> Option<u64> {
    process_cpu_ns(std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows_with_work() {
        let before = own_cpu_ns().expect("/proc is readable");
        let mut x = 0u64;
        let start = std::time::Instant::now();
        while start.elapsed().as_millis() < 50 {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = own_cpu_ns().expect("/proc is readable");
        assert!(after > before, "{after} <= {before}");
        assert!(stat_ns(std::process::id()).is_some());
        assert!(process_cpu_ns(u32::MAX).is_none());
    }
}
