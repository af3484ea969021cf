//! Which faultline process this is, among the instances sharing one database: the holder
//! named in job leases, alert-feed claims and run records.

/// `host:pid:xxxx`, fixed for the life of the process (the suffix tells a restarted process
/// with a recycled pid from its predecessor).
pub fn instance_id() -> &'static str {
    static ID: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    ID.get_or_init(|| {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_owned())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{host}:{}:{:04x}", std::process::id(), fastrand::u16(..))
    })
}
