//! The machine's size (CPUs, memory, GPUs) and load (CPU %, memory %).
//!
//! A heartbeat refreshes only CPU usage and RAM — two small reads of `/proc` on Linux —
//! so it stays cheap. GPUs are asked once, at start, from `nvidia-smi` when it exists;
//! a machine without it reports none.
//!
//! Reading `nvidia-smi`'s output ([`parse_nvidia_smi`]) is pure; the rest reads the
//! machine.

use std::time::Duration;

use herd_api::{GpuInfo, NodeCapacity};
use sysinfo::{CpuRefreshKind, MemoryRefreshKind, RefreshKind, System};

const MIB: u64 = 1024 * 1024;

/// CPU and memory, sampled once per heartbeat.
pub struct Sampler {
    system: System,
}

/// One sample of the machine's load.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Usage {
    /// Of all CPUs together, 0–100, since the previous sample.
    pub cpu_percent: f64,
    /// Used memory (total minus available), 0–100.
    pub memory_percent: f64,
}

impl Default for Sampler {
    fn default() -> Self {
        Sampler::new()
    }
}

impl Sampler {
    /// Reads the CPU list and memory once, so the first [`Sampler::sample`] already
    /// has a previous CPU reading to compare with.
    pub fn new() -> Sampler {
        let system = System::new_with_specifics(
            RefreshKind::nothing()
                .with_cpu(CpuRefreshKind::nothing().with_cpu_usage())
                .with_memory(MemoryRefreshKind::nothing().with_ram()),
        );
        Sampler { system }
    }

    /// Logical CPUs.
    pub fn cpus(&self) -> u32 {
        u32::try_from(self.system.cpus().len()).unwrap_or(u32::MAX)
    }

    pub fn total_memory(&self) -> u64 {
        self.system.total_memory()
    }

    /// The machine's size, with `gpus` from [`detect_gpus`].
    pub fn capacity(&self, gpus: &[GpuInfo]) -> NodeCapacity {
        NodeCapacity {
            cpus: self.cpus(),
            memory_bytes: self.total_memory(),
            gpus: gpus.to_vec(),
        }
    }

    /// CPU usage since the last sample and memory in use now.
    pub fn sample(&mut self) -> Usage {
        self.system.refresh_cpu_usage();
        self.system
            .refresh_memory_specifics(MemoryRefreshKind::nothing().with_ram());
        let total = self.system.total_memory();
        let memory_percent = if total == 0 {
            0.0
        } else {
            self.system.used_memory() as f64 * 100.0 / total as f64
        };
        Usage {
            cpu_percent: round1(f64::from(self.system.global_cpu_usage())),
            memory_percent: round1(memory_percent),
        }
    }
}

/// To one decimal: enough for routing, and fewer digits churn in the store.
fn round1(x: f64) -> f64 {
    if x.is_finite() {
        ((x * 10.0).round() / 10.0).clamp(0.0, 100.0)
    } else {
        0.0
    }
}

/// Parses the output of
/// `nvidia-smi --query-gpu=name,memory.total --format=csv,noheader,nounits`: one GPU
/// per line, `name, MiB`. A memory nvidia-smi cannot tell (`[N/A]`) is 0; blank lines
/// are skipped. GPU names do not contain commas, but the last comma is the separator
/// in case one does.
pub fn parse_nvidia_smi(output: &str) -> Vec<GpuInfo> {
    output
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .filter_map(|line| {
            let (name, memory) = match line.rsplit_once(',') {
                Some((name, memory)) => (name.trim(), memory.trim()),
                None => (line, ""),
            };
            if name.is_empty() {
                return None;
            }
            let memory_bytes = memory
                .parse::<f64>()
                .ok()
                .filter(|m| m.is_finite() && *m >= 0.0)
                .map_or(0, |mib| (mib * MIB as f64) as u64);
            Some(GpuInfo {
                name: name.to_owned(),
                memory_bytes,
            })
        })
        .collect()
}

/// The NVIDIA GPUs of this machine; none when `nvidia-smi` is missing or fails.
pub async fn detect_gpus(timeout: Duration) -> Vec<GpuInfo> {
    let run = tokio::process::Command::new("nvidia-smi")
        .args([
            "--query-gpu=name,memory.total",
            "--format=csv,noheader,nounits",
        ])
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true)
        .output();
    match tokio::time::timeout(timeout, run).await {
        Ok(Ok(out)) if out.status.success() => {
            let gpus = parse_nvidia_smi(&String::from_utf8_lossy(&out.stdout));
            tracing::info!(count = gpus.len(), "GPUs from nvidia-smi");
            gpus
        }
        Ok(Ok(out)) => {
            tracing::warn!(status = ?out.status, stderr = %String::from_utf8_lossy(&out.stderr).trim(), "nvidia-smi failed; reporting no GPUs");
            Vec::new()
        }
        Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!("no nvidia-smi: reporting no GPUs");
            Vec::new()
        }
        Ok(Err(e)) => {
            tracing::warn!(error = %e, "could not run nvidia-smi; reporting no GPUs");
            Vec::new()
        }
        Err(_) => {
            tracing::warn!(
                ?timeout,
                "nvidia-smi did not answer in time; reporting no GPUs"
            );
            Vec::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_smi_table() {
        let gpu = |name: &str, mib: u64| GpuInfo {
            name: name.into(),
            memory_bytes: mib * MIB,
        };
        let cases: Vec<(&str, Vec<GpuInfo>)> = vec![
            ("", vec![]),
            ("\n\n", vec![]),
            (
                "NVIDIA GeForce RTX 4090, 24564\n",
                vec![gpu("NVIDIA GeForce RTX 4090", 24564)],
            ),
            (
                "NVIDIA A100-SXM4-80GB, 81920\r\nNVIDIA A100-SXM4-80GB, 81920\r\n",
                vec![
                    gpu("NVIDIA A100-SXM4-80GB", 81920),
                    gpu("NVIDIA A100-SXM4-80GB", 81920),
                ],
            ),
            ("Tesla T4, [N/A]", vec![gpu("Tesla T4", 0)]),
            ("  Odd, Name, 8192  ", vec![gpu("Odd, Name", 8192)]),
            ("JustAName", vec![gpu("JustAName", 0)]),
            (", 1024", vec![]),
            ("GPU, -5", vec![gpu("GPU", 0)]),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_nvidia_smi(input), expected, "{input:?}");
        }
    }

    #[test]
    fn rounding_table() {
        let cases = [
            (12.34, 12.3),
            (12.35, 12.4),
            (-1.0, 0.0),
            (100.04, 100.0),
            (f64::NAN, 0.0),
        ];
        for (x, want) in cases {
            assert!((round1(x) - want).abs() < 1e-9, "{x} → {}", round1(x));
        }
    }

    #[test]
    fn sampler_reads_this_machine() {
        let mut s = Sampler::new();
        assert!(s.cpus() >= 1);
        assert!(s.total_memory() > 0);
        let u = s.sample();
        assert!((0.0..=100.0).contains(&u.cpu_percent), "{u:?}");
        assert!(u.memory_percent > 0.0 && u.memory_percent <= 100.0, "{u:?}");
        let cap = s.capacity(&[]);
        assert_eq!(cap.cpus, s.cpus());
        assert!(cap.gpus.is_empty());
    }
}
