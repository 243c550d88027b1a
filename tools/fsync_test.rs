//! `zkd fsync-test --dir D`: what a transaction-log writer sees on D's disk.
//!
//! For each way of making a group of transactions durable (append + fdatasync, pwrite into a
//! zero-filled preallocated file + fdatasync, pwrite into fallocate'd space + fdatasync, mmap +
//! msync, O_DSYNC writes, O_DIRECT|O_DSYNC writes) and each group size (txns per sync), it
//! measures the latency of write+sync (p50/p99/p99.99/max) and the throughput (txns/s, MB/s), then
//! recommends zoo.cfg settings. The run is bounded: `--seconds` is split evenly between the cells.
//! Files are created in D and removed afterwards.

use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use serde::Serialize;

pub const GROUP_TXNS_MAX: usize = 65_536;
pub const TXN_SIZE_MAX_BYTES: usize = 1 << 20;
pub const FILE_MIB_MAX: u64 = 4096;
const ALIGN: usize = 4096;

#[derive(clap::Args, Debug, Clone)]
pub struct FsyncTestArgs {
    /// Directory on the disk to test (a data-log dir); scratch files are created and removed there.
    #[arg(long)]
    pub dir: PathBuf,
    /// Bytes per transaction as logged (ZooKeeper: ~49 bytes of header and checksum + the body).
    #[arg(long, default_value_t = 150)]
    pub txn_size: usize,
    /// Total measuring time, split evenly over methods x group sizes.
    #[arg(long, default_value_t = 10.0)]
    pub seconds: f64,
    /// Group sizes (transactions per sync).
    #[arg(long, value_delimiter = ',', default_value = "1,4,16,64,256,1024")]
    pub groups: Vec<usize>,
    /// Size of the preallocated scratch file in MiB (writes wrap around inside it).
    #[arg(long, default_value_t = 64)]
    pub file_mib: u64,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl FsyncTestArgs {
    pub fn new(dir: PathBuf) -> Self {
        FsyncTestArgs {
            dir,
            txn_size: 150,
            seconds: 10.0,
            groups: vec![1, 4, 16, 64, 256, 1024],
            file_mib: 64,
            json: false,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// write() at the end of a growing file, then fdatasync.
    AppendFdatasync,
    /// pwrite() into a file already filled with zeros, then fdatasync.
    PreallocZeroPwrite,
    /// pwrite() into space reserved with fallocate (unwritten extents), then fdatasync.
    FallocatePwrite,
    /// memcpy into a shared mapping of a zero-filled file, then msync(MS_SYNC) of the range.
    MmapMsync,
    /// pwrite() on a zero-filled file opened O_DSYNC (no separate sync call).
    ODsync,
    /// pwrite() of 4 KiB-aligned blocks on a zero-filled file opened O_DIRECT|O_DSYNC.
    ODirect,
}

pub const METHODS: [Method; 6] = [
    Method::AppendFdatasync,
    Method::PreallocZeroPwrite,
    Method::FallocatePwrite,
    Method::MmapMsync,
    Method::ODsync,
    Method::ODirect,
];

impl Method {
    pub fn name(self) -> &'static str {
        match self {
            Method::AppendFdatasync => "append+fdatasync",
            Method::PreallocZeroPwrite => "prealloc-zero+pwrite+fdatasync",
            Method::FallocatePwrite => "fallocate+pwrite+fdatasync",
            Method::MmapMsync => "mmap+msync",
            Method::ODsync => "O_DSYNC pwrite",
            Method::ODirect => "O_DIRECT|O_DSYNC pwrite",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub method: Method,
    pub group_txns: usize,
    /// None when the method works; otherwise why it could not be measured here.
    pub unavailable: Option<String>,
    pub syncs: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p99_99_us: u64,
    pub max_us: u64,
    pub txns_per_s: f64,
    pub mb_per_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recommendation {
    pub setting: String,
    pub reason: String,
}

/// Marks a recommendation that is a finding about the disk, with nothing to set.
const NOTE: &str = "note: ";

impl Recommendation {
    /// A `key=value` line for zoo.cfg (the rest are notes, marked with `NOTE`).
    pub fn is_setting(&self) -> bool {
        !self.setting.starts_with(NOTE)
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub dir: PathBuf,
    pub txn_size_bytes: usize,
    pub cells: Vec<Cell>,
    pub recommendations: Vec<Recommendation>,
}

impl Report {
    pub fn cell(&self, m: Method, group: usize) -> Option<&Cell> {
        self.cells.iter().find(|c| c.method == m && c.group_txns == group && c.unavailable.is_none())
    }
}

/// A heap buffer aligned for O_DIRECT.
struct AlignedBuf {
    ptr: *mut u8,
    len: usize,
}

impl AlignedBuf {
    fn new(len: usize) -> Self {
        let len = len.div_ceil(ALIGN).max(1) * ALIGN;
        let layout = std::alloc::Layout::from_size_align(len, ALIGN).expect("aligned layout");
        // SAFETY: layout has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "out of memory allocating {len} bytes");
        AlignedBuf { ptr, len }
    }
    fn as_mut(&mut self) -> &mut [u8] {
        // SAFETY: ptr is valid for len bytes, owned by self.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        let layout = std::alloc::Layout::from_size_align(self.len, ALIGN).expect("aligned layout");
        // SAFETY: allocated in new() with this layout.
        unsafe { std::alloc::dealloc(self.ptr, layout) }
    }
}

fn errno_result(r: libc::c_int, what: &str) -> anyhow::Result<()> {
    if r != 0 {
        let e = std::io::Error::last_os_error();
        bail!("{what}: {e}");
    }
    Ok(())
}

fn fdatasync(f: &File) -> anyhow::Result<()> {
    // SAFETY: plain syscall on an open fd.
    errno_result(unsafe { libc::fdatasync(f.as_raw_fd()) }, "fdatasync")
}

fn zero_fill(path: &Path, bytes: u64) -> anyhow::Result<()> {
    let mut f = OpenOptions::new().create(true).truncate(true).write(true).open(path)?;
    let chunk = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        f.write_all(&chunk[..n])?;
        left -= n as u64;
    }
    f.sync_all()?;
    Ok(())
}

/// Where the next group goes in a wrap-around file of `size` bytes.
fn next_offset(off: &mut u64, len: usize, size: u64, align: u64) -> u64 {
    if *off + len as u64 > size {
        *off = 0;
    }
    let at = *off;
    *off += (len as u64).div_ceil(align) * align;
    at
}

/// Measures one method at one group size until `deadline` (at least one sync).
fn measure(
    m: Method,
    group: usize,
    a: &FsyncTestArgs,
    zero_file: &Path,
    scratch: &Path,
    deadline: Instant,
) -> anyhow::Result<(Histogram<u64>, u64, Duration)> {
    let len = group * a.txn_size;
    let size = a.file_mib << 20;
    if len as u64 > size {
        bail!("a group of {len} bytes does not fit in --file-mib {}", a.file_mib);
    }
    let mut data = vec![0u8; len];
    for (i, b) in data.iter_mut().enumerate() {
        *b = (i % 251) as u8 + 1;
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000_000, 3).expect("static bounds");
    let mut off = 0u64;
    let mut syncs = 0u64;
    let t_start = Instant::now();
    let mut step = |f: &mut dyn FnMut(u64) -> anyhow::Result<()>, align: u64| -> anyhow::Result<()> {
        loop {
            let at = next_offset(&mut off, len, size, align);
            let t = Instant::now();
            f(at)?;
            h.saturating_record((t.elapsed().as_micros() as u64).max(1));
            syncs += 1;
            if Instant::now() >= deadline {
                return Ok(());
            }
        }
    };
    match m {
        Method::AppendFdatasync => {
            let _ = std::fs::remove_file(scratch);
            let mut f = OpenOptions::new().create(true).append(true).open(scratch)?;
            let mut written = 0u64;
            step(
                &mut |_| {
                    if written + len as u64 > size {
                        // Start a new "log file", as a txn log rolls over.
                        f = OpenOptions::new().create(true).truncate(true).write(true).open(scratch)?;
                        written = 0;
                    }
                    f.write_all(&data)?;
                    written += len as u64;
                    fdatasync(&f)
                },
                1,
            )?;
        }
        Method::PreallocZeroPwrite => {
            let f = OpenOptions::new().write(true).open(zero_file)?;
            step(&mut |at| Ok(f.write_all_at(&data, at)?).and_then(|_| fdatasync(&f)), 1)?;
        }
        Method::FallocatePwrite => {
            let _ = std::fs::remove_file(scratch);
            let f = OpenOptions::new().create(true).write(true).truncate(true).open(scratch)?;
            // SAFETY: plain syscall on an open fd.
            let r = unsafe { libc::fallocate(f.as_raw_fd(), 0, 0, size as libc::off_t) };
            errno_result(r, "fallocate")?;
            f.sync_all()?;
            step(&mut |at| Ok(f.write_all_at(&data, at)?).and_then(|_| fdatasync(&f)), 1)?;
        }
        Method::MmapMsync => {
            let f = OpenOptions::new().read(true).write(true).open(zero_file)?;
            // SAFETY: mapping a regular file we opened read-write, of its full (zero-filled) size.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    size as usize,
                    libc::PROT_READ | libc::PROT_WRITE,
                    libc::MAP_SHARED,
                    f.as_raw_fd(),
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                bail!("mmap: {}", std::io::Error::last_os_error());
            }
            let base = p as *mut u8;
            let r = step(
                &mut |at| {
                    // SAFETY: at + len <= size (next_offset wraps), inside the mapping.
                    unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), base.add(at as usize), len) };
                    let page = (at as usize / ALIGN) * ALIGN;
                    let end = at as usize + len;
                    // SAFETY: the range lies inside the mapping and starts page-aligned.
                    let r = unsafe {
                        libc::msync(base.add(page) as *mut libc::c_void, end - page, libc::MS_SYNC)
                    };
                    errno_result(r, "msync")
                },
                1,
            );
            // SAFETY: unmapping what we mapped above.
            unsafe { libc::munmap(p, size as usize) };
            r?;
        }
        Method::ODsync => {
            let f = OpenOptions::new().write(true).custom_flags(libc::O_DSYNC).open(zero_file)?;
            step(&mut |at| Ok(f.write_all_at(&data, at)?), 1)?;
        }
        Method::ODirect => {
            let f = OpenOptions::new()
                .write(true)
                .custom_flags(libc::O_DIRECT | libc::O_DSYNC)
                .open(zero_file)
                .map_err(|e| anyhow::anyhow!("the filesystem refuses O_DIRECT ({e})"))?;
            let mut buf = AlignedBuf::new(len);
            buf.as_mut()[..len].copy_from_slice(&data);
            let block = buf.len;
            step(
                &mut |at| {
                    f.write_all_at(buf.as_mut(), at)
                        .map_err(|e| anyhow::anyhow!("O_DIRECT write of {block} bytes: {e}"))
                },
                ALIGN as u64,
            )?;
        }
    }
    Ok((h, syncs, t_start.elapsed()))
}

/// Runs every cell and derives recommendations.
pub fn run_test(a: &FsyncTestArgs) -> anyhow::Result<Report> {
    if a.txn_size == 0 || a.txn_size > TXN_SIZE_MAX_BYTES {
        bail!("--txn-size {} outside 1..={TXN_SIZE_MAX_BYTES}", a.txn_size);
    }
    if a.groups.is_empty() || a.groups.iter().any(|&g| g == 0 || g > GROUP_TXNS_MAX) {
        bail!("--groups {:?}: each must be in 1..={GROUP_TXNS_MAX}", a.groups);
    }
    if a.file_mib == 0 || a.file_mib > FILE_MIB_MAX {
        bail!("--file-mib {} outside 1..={FILE_MIB_MAX}", a.file_mib);
    }
    if !(a.seconds > 0.0 && a.seconds <= 3600.0) {
        bail!("--seconds {} outside (0, 3600]", a.seconds);
    }
    let meta = std::fs::metadata(&a.dir).with_context(|| format!("--dir {}", a.dir.display()))?;
    if !meta.is_dir() {
        bail!("--dir {} is not a directory", a.dir.display());
    }
    let tag = std::process::id();
    let zero_file = a.dir.join(format!(".zkd-fsync-test-{tag}.zero"));
    let scratch = a.dir.join(format!(".zkd-fsync-test-{tag}.scratch"));
    let started = Instant::now();
    let result = (|| {
        zero_fill(&zero_file, a.file_mib << 20)
            .with_context(|| format!("zero-filling {}", zero_file.display()))?;
        let cells_n = METHODS.len() * a.groups.len();
        let left = Duration::from_secs_f64(a.seconds).saturating_sub(started.elapsed());
        let per_cell = (left / cells_n as u32).max(Duration::from_millis(5));
        let mut cells = Vec::with_capacity(cells_n);
        for m in METHODS {
            for &g in &a.groups {
                let deadline = Instant::now() + per_cell;
                let cell = match measure(m, g, a, &zero_file, &scratch, deadline) {
                    Ok((h, syncs, took)) => {
                        let secs = took.as_secs_f64().max(1e-9);
                        let txns = syncs as f64 * g as f64;
                        Cell {
                            method: m,
                            group_txns: g,
                            unavailable: None,
                            syncs,
                            p50_us: h.value_at_quantile(0.5),
                            p99_us: h.value_at_quantile(0.99),
                            p99_99_us: h.value_at_quantile(0.9999),
                            max_us: h.highest_equivalent(h.max()),
                            txns_per_s: txns / secs,
                            mb_per_s: txns * a.txn_size as f64 / secs / 1e6,
                        }
                    }
                    Err(e) => Cell {
                        method: m,
                        group_txns: g,
                        unavailable: Some(format!("{e:#}")),
                        syncs: 0,
                        p50_us: 0,
                        p99_us: 0,
                        p99_99_us: 0,
                        max_us: 0,
                        txns_per_s: 0.0,
                        mb_per_s: 0.0,
                    },
                };
                cells.push(cell);
            }
        }
        Ok::<_, anyhow::Error>(cells)
    })();
    let _ = std::fs::remove_file(&zero_file);
    let _ = std::fs::remove_file(&scratch);
    let cells = result?;
    let mut report =
        Report { dir: a.dir.clone(), txn_size_bytes: a.txn_size, cells, recommendations: Vec::new() };
    report.recommendations = recommend(&report, &a.groups);
    Ok(report)
}

fn ms(us: u64) -> String {
    format!("{:.2} ms", us as f64 / 1000.0)
}

/// Derives zoo.cfg advice from the measurements.
pub fn recommend(r: &Report, groups: &[usize]) -> Vec<Recommendation> {
    let mut out = Vec::new();
    let mut rec = |setting: String, reason: String| out.push(Recommendation { setting, reason });
    let g1 = *groups.iter().min().unwrap_or(&1);
    let gmid = groups.iter().copied().find(|&g| g >= 16).unwrap_or(*groups.iter().max().unwrap_or(&1));
    let append = r.cell(Method::AppendFdatasync, g1);
    let zero = r.cell(Method::PreallocZeroPwrite, g1);
    let falloc = r.cell(Method::FallocatePwrite, g1);

    // Durability sanity.
    let fastest_p50 =
        r.cells.iter().filter(|c| c.unavailable.is_none() && c.group_txns == g1).map(|c| c.p50_us).min();
    match fastest_p50 {
        Some(p) if p < 20 => rec(
            "forceSync=yes".into(),
            format!(
                "keep it on, but note: syncs here complete in {p} us at p50, faster than any real device can persist; \
                 this directory is on tmpfs/overlay or a disk whose volatile write cache ignores flushes, so \
                 nothing on it survives a power loss whatever the setting"
            ),
        ),
        Some(p) => rec(
            "forceSync=yes".into(),
            format!(
                "one sync costs {} at p50 here; with forceSync=no acknowledged writes can be lost on power failure, \
                 so pay it and amortise it by grouping (below)",
                ms(p)
            ),
        ),
        None => rec("forceSync=yes".into(), "no method could be measured on this directory".into()),
    }

    // Preallocation.
    if let (Some(ap), Some(z)) = (append, zero) {
        if ap.p99_us as f64 > 1.2 * z.p99_us as f64 {
            rec(
                "preAllocSize=65536".into(),
                format!(
                    "keep preallocation (the default 64 MiB): appending syncs at p99 {} vs {} writing into \
                     preallocated space, because each append also grows the file and fdatasync must then write metadata",
                    ms(ap.p99_us),
                    ms(z.p99_us)
                ),
            )
        } else {
            rec(
                "preAllocSize=65536".into(),
                format!(
                    "the default is fine; this disk appends about as fast as it overwrites (p99 {} vs {}), \
                     so a larger or smaller preallocation buys little",
                    ms(ap.p99_us),
                    ms(z.p99_us)
                ),
            )
        }
    }
    if let (Some(fa), Some(z)) = (falloc, zero) {
        if fa.p99_us as f64 > 1.2 * z.p99_us as f64 {
            rec(
                format!("{NOTE}preallocation"),
                format!(
                    "fallocate'd (unwritten) space syncs at p99 {} vs {} for zero-filled space: the first write \
                     to each extent is a metadata change; zkd (and ZooKeeper) fill preallocated log space with zeros",
                    ms(fa.p99_us),
                    ms(z.p99_us)
                ),
            )
        }
    }

    // The log's write path (`zkd.txnlog.writePath`): direct, pwrite or mmap, compared at the
    // middle group size. Direct is the default and wins ties (within 20%): it keeps the log
    // and its preallocation out of the page cache, so a sync only flushes the device.
    let direct_why = r.cells.iter().find(|c| c.method == Method::ODirect).and_then(|c| c.unavailable.clone());
    let paths: Vec<(&str, &Cell)> =
        [("direct", Method::ODirect), ("pwrite", Method::PreallocZeroPwrite), ("mmap", Method::MmapMsync)]
            .into_iter()
            .filter_map(|(name, m)| r.cell(m, gmid).map(|c| (name, c)))
            .collect();
    let best = paths.iter().min_by_key(|(_, c)| c.p99_us).copied();
    let chosen = match (paths.first(), best) {
        (Some(&d @ ("direct", dc)), Some((_, bc))) if dc.p99_us as f64 <= 1.2 * bc.p99_us as f64 => Some(d),
        _ => best,
    };
    if let Some((choice, _)) = chosen {
        let measured: Vec<String> = paths
            .iter()
            .map(|(n, c)| format!("{n} p99 {} ({:.0} txns/s)", ms(c.p99_us), c.txns_per_s))
            .collect();
        let mut why = format!("at {gmid} txns per sync: {}", measured.join(", "));
        if let Some(u) = &direct_why {
            why.push_str(&format!(
                "; O_DIRECT is not available on this filesystem ({u}), zkd falls back to pwrite by itself"
            ));
        } else if choice == "direct" {
            why.push_str("; direct is the default: it keeps the log out of the page cache, so a sync only flushes the device");
        }
        rec(format!("zkd.txnlog.writePath={choice}"), why);
    }
    let chosen = chosen.map(|(_, c)| c);

    // Group commit.
    let best = r
        .cells
        .iter()
        .filter(|c| c.method == Method::PreallocZeroPwrite && c.unavailable.is_none())
        .max_by(|x, y| x.txns_per_s.total_cmp(&y.txns_per_s));
    if let (Some(z), Some(b)) = (zero, best) {
        rec(
            format!("{NOTE}group commit"),
            format!(
                "one sync per group: {} txns per sync reach {:.0} txns/s ({:.1} MB/s, p99 {}) vs {:.0} txns/s at {} per \
                 sync (x{:.1}); zkd's log writer syncs once per batch of everything queued, by itself \
                 (no setting)",
                b.group_txns,
                b.txns_per_s,
                b.mb_per_s,
                ms(b.p99_us),
                z.txns_per_s,
                g1,
                b.txns_per_s / z.txns_per_s.max(1e-9)
            ),
        );
    }

    // Warning threshold from the tail of the write path recommended above.
    if let Some(c) = chosen.or(zero) {
        let p9999_ms = c.p99_99_us as f64 / 1000.0;
        let thr = ((2.0 * p9999_ms).ceil() as u64).max(10);
        rec(
            format!("fsync.warningthresholdms={thr}"),
            format!(
                "the measured p99.99 of a sync is {p9999_ms:.2} ms (max {}); 2x that, at least 10 ms, warns only on \
                 real outliers (the default 1000 ms hides stalls clients already feel)",
                ms(c.max_us)
            ),
        );
    }

    if let (Some(d), Some(z)) = (r.cell(Method::ODsync, g1), zero) {
        rec(
            format!("{NOTE}O_DSYNC"),
            format!(
                "O_DSYNC writes cost p99 {} vs {} for pwrite+fdatasync at {g1} txn(s) per sync",
                ms(d.p99_us),
                ms(z.p99_us)
            ),
        );
    }
    out
}

/// The report as text.
pub fn render(r: &Report) -> String {
    use std::fmt::Write as _;
    let mut o = String::new();
    let _ = writeln!(o, "fsync-test on {} ({} bytes per txn)", r.dir.display(), r.txn_size_bytes);
    let _ = writeln!(
        o,
        "{:<32} {:>6} {:>7} {:>10} {:>10} {:>11} {:>10} {:>11} {:>8}",
        "method", "group", "syncs", "p50_us", "p99_us", "p99.99_us", "max_us", "txns/s", "MB/s"
    );
    for c in &r.cells {
        match &c.unavailable {
            Some(why) => {
                let _ = writeln!(o, "{:<32} {:>6}   unavailable: {why}", c.method.name(), c.group_txns);
            }
            None => {
                let _ = writeln!(
                    o,
                    "{:<32} {:>6} {:>7} {:>10} {:>10} {:>11} {:>10} {:>11.0} {:>8.2}",
                    c.method.name(),
                    c.group_txns,
                    c.syncs,
                    c.p50_us,
                    c.p99_us,
                    c.p99_99_us,
                    c.max_us,
                    c.txns_per_s,
                    c.mb_per_s
                );
            }
        }
    }
    let _ = writeln!(o, "\nRecommended zoo.cfg settings for this disk");
    for rec in r.recommendations.iter().filter(|x| x.is_setting()) {
        let _ = writeln!(o, "  {}\n      {}", rec.setting, rec.reason);
    }
    let notes: Vec<&Recommendation> = r.recommendations.iter().filter(|x| !x.is_setting()).collect();
    if !notes.is_empty() {
        let _ = writeln!(o, "\nNotes (nothing to set)");
        for rec in notes {
            let _ = writeln!(o, "  {}\n      {}", &rec.setting[NOTE.len()..], rec.reason);
        }
    }
    o
}

/// `zkd fsync-test`.
pub fn run(a: FsyncTestArgs) -> anyhow::Result<()> {
    let r = run_test(&a)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        print!("{}", render(&r));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_second_run_measures_every_cell_and_recommends() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = FsyncTestArgs::new(dir.path().to_path_buf());
        a.seconds = 1.0;
        a.file_mib = 4;
        let t = Instant::now();
        let r = run_test(&a).unwrap();
        assert!(t.elapsed() < Duration::from_secs(5), "took {:?}", t.elapsed());
        assert_eq!(r.cells.len(), METHODS.len() * 6);
        for c in &r.cells {
            if c.method == Method::ODirect {
                continue; // tmpfs refuses it; reported as unavailable
            }
            assert!(c.unavailable.is_none(), "{c:?}");
            assert!(c.syncs >= 1 && c.p50_us <= c.p99_us && c.p99_us <= c.max_us, "{c:?}");
            assert!(c.txns_per_s > 0.0);
        }
        let text = render(&r);
        assert!(text.contains("Recommended zoo.cfg settings for this disk"));
        let settings: Vec<&str> = r.recommendations.iter().map(|x| x.setting.as_str()).collect();
        assert!(settings.contains(&"forceSync=yes"), "{settings:?}");
        assert!(settings.iter().any(|s| s.starts_with("fsync.warningthresholdms=")), "{settings:?}");
        assert!(settings.iter().any(|s| s.starts_with("zkd.txnlog.writePath=")), "{settings:?}");
        assert!(!settings.iter().any(|s| s.starts_with("zkd.log.method")), "{settings:?}");
        assert!(settings.iter().any(|s| s.starts_with("preAllocSize=")), "{settings:?}");
        // Every key it recommends is one zkd's zoo.cfg parser takes; the rest are marked notes.
        let known = ["forceSync", "preAllocSize", "fsync.warningthresholdms", "zkd.txnlog.writePath"];
        for rec in &r.recommendations {
            if rec.is_setting() {
                let (key, value) = rec.setting.split_once('=').expect("key=value");
                assert!(known.contains(&key) && !value.is_empty(), "not a zoo.cfg setting: {}", rec.setting);
            }
        }
        // Scratch files are gone.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }

    #[test]
    fn wrap_around_offsets_stay_inside_the_file() {
        let mut off = 0;
        for _ in 0..100 {
            let at = next_offset(&mut off, 1000, 10_000, 4096);
            assert!(at + 1000 <= 10_000 && at.is_multiple_of(4096));
        }
    }

    #[test]
    fn bad_arguments_are_refused() {
        let mut a = FsyncTestArgs::new("/nonexistent-dir-zkd".into());
        assert!(run_test(&a).is_err());
        a.dir = std::env::temp_dir();
        a.groups = vec![0];
        assert!(run_test(&a).is_err());
    }
}
