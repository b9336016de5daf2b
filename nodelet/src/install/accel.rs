//! Which extra Linux archive an accelerator needs, the way Ollama's own installer
//! (`install.sh`) chooses it: a Jetson (`/etc/nv_tegra_release` says `R36` or `R35`)
//! gets `ollama-linux-arm64-jetpack6` or `-jetpack5`; otherwise a machine with an AMD
//! display device (PCI vendor 0x1002) and no NVIDIA driver (`nvidia-smi`) gets
//! `ollama-linux-amd64-rocm`. The extra archive is unpacked over the main one, into
//! the same version directory.
//!
//! [`choose_accelerator`] is pure and table-tested; [`probe_accelerator`] reads the
//! files it needs.

use std::path::Path;

use super::asset::{ArchiveFormat, Asset};

/// An accelerator with its own Ollama archive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Accelerator {
    /// The main archive is all (CPU, and NVIDIA CUDA, which it carries).
    #[default]
    None,
    /// AMD GPUs through ROCm.
    Rocm,
    /// NVIDIA Jetson on JetPack 5 (L4T R35).
    JetPack5,
    /// NVIDIA Jetson on JetPack 6 (L4T R36).
    JetPack6,
}

/// What the machine shows about its accelerators.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AcceleratorFacts {
    /// The first line of `/etc/nv_tegra_release`, present only on Jetson boards.
    pub tegra_release: Option<String>,
    /// `(vendor, class)` of every PCI device, from `/sys/bus/pci/devices/*/{vendor,class}`.
    pub pci_devices: Vec<(u16, u32)>,
    /// Whether `nvidia-smi` is on `PATH` (an NVIDIA driver is installed).
    pub nvidia_smi: bool,
}

const PCI_VENDOR_AMD_ATI: u16 = 0x1002;
/// PCI base class 0x03: display controllers (VGA, 3D, other).
const PCI_CLASS_DISPLAY: u32 = 0x03;

/// Chooses as Ollama's installer does; `arch` is `std::env::consts::ARCH`. Ollama
/// publishes the ROCm archive for x86_64 and the JetPack ones for aarch64 only.
pub fn choose_accelerator(arch: &str, facts: &AcceleratorFacts) -> Accelerator {
    if let Some(release) = &facts.tegra_release {
        if arch != "aarch64" {
            return Accelerator::None;
        }
        // "# R36 (release), REVISION: 4.0, ..." — the L4T major release.
        return if release.contains("R36") {
            Accelerator::JetPack6
        } else if release.contains("R35") {
            Accelerator::JetPack5
        } else {
            Accelerator::None
        };
    }
    let amd_display = facts
        .pci_devices
        .iter()
        .any(|&(vendor, class)| vendor == PCI_VENDOR_AMD_ATI && class >> 16 == PCI_CLASS_DISPLAY);
    if amd_display && !facts.nvidia_smi && arch == "x86_64" {
        return Accelerator::Rocm;
    }
    Accelerator::None
}

/// The extra archive for `accelerator`, named after the main Linux archive and in its
/// format (`.tar.zst` from v0.14 on, `.tgz` before).
pub fn accelerator_asset(main: &Asset, accelerator: Accelerator) -> Option<Asset> {
    let suffix = match accelerator {
        Accelerator::None => return None,
        Accelerator::Rocm => "rocm",
        Accelerator::JetPack5 => "jetpack5",
        Accelerator::JetPack6 => "jetpack6",
    };
    let (stem, ext) = match main.format {
        ArchiveFormat::TarZst => (main.name.strip_suffix(".tar.zst")?, ".tar.zst"),
        ArchiveFormat::Tgz => (main.name.strip_suffix(".tgz")?, ".tgz"),
        ArchiveFormat::Zip => return None,
    };
    if !stem.starts_with("ollama-linux-") {
        return None;
    }
    Some(Asset {
        name: format!("{stem}-{suffix}{ext}"),
        format: main.format,
    })
}

/// Parses a sysfs hex value such as `0x1002` or `0x030000`.
fn sysfs_hex(text: &str) -> Option<u32> {
    u32::from_str_radix(text.trim().strip_prefix("0x")?, 16).ok()
}

/// Reads [`AcceleratorFacts`] on this machine (Linux; elsewhere nothing is found).
pub fn probe_accelerator(path_var: Option<&std::ffi::OsStr>) -> AcceleratorFacts {
    let tegra_release = std::fs::read_to_string("/etc/nv_tegra_release")
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned));
    let mut pci_devices = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/sys/bus/pci/devices") {
        for entry in entries.flatten() {
            let read = |file: &str| std::fs::read_to_string(entry.path().join(file)).ok();
            let vendor = read("vendor").as_deref().and_then(sysfs_hex);
            let class = read("class").as_deref().and_then(sysfs_hex);
            if let (Some(vendor), Some(class)) = (vendor, class)
                && let Ok(vendor) = u16::try_from(vendor)
            {
                pci_devices.push((vendor, class));
            }
        }
    }
    let nvidia_smi = path_var
        .map(|p| {
            std::env::split_paths(p).any(|dir| {
                dir.is_absolute() && super::layout::is_executable(&dir.join("nvidia-smi"))
            })
        })
        .unwrap_or(false)
        || Path::new("/usr/bin/nvidia-smi").exists();
    AcceleratorFacts {
        tegra_release,
        pci_devices,
        nvidia_smi,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts(tegra: Option<&str>, pci: &[(u16, u32)], nvidia_smi: bool) -> AcceleratorFacts {
        AcceleratorFacts {
            tegra_release: tegra.map(str::to_owned),
            pci_devices: pci.to_vec(),
            nvidia_smi,
        }
    }

    #[test]
    fn choose_table() {
        use Accelerator::{JetPack5, JetPack6, Rocm};
        const NONE: Accelerator = Accelerator::None;
        const AMD_VGA: (u16, u32) = (0x1002, 0x030000);
        const AMD_3D: (u16, u32) = (0x1002, 0x038000);
        const AMD_AUDIO: (u16, u32) = (0x1002, 0x040300);
        const AMD_CHIPSET: (u16, u32) = (0x1022, 0x060000);
        const NVIDIA_VGA: (u16, u32) = (0x10de, 0x030000);
        const INTEL_VGA: (u16, u32) = (0x8086, 0x030000);
        let r36 = "# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64";
        let r35 = "# R35 (release), REVISION: 5.0, GCID: 35550185, BOARD: t186ref, EABI: aarch64";
        let r32 = "# R32 (release), REVISION: 7.1, GCID: 29818004, BOARD: t210ref, EABI: aarch64";
        let cases = [
            (
                "plain x86 server",
                "x86_64",
                facts(None, &[AMD_CHIPSET, INTEL_VGA], false),
                NONE,
            ),
            (
                "AMD GPU",
                "x86_64",
                facts(None, &[AMD_CHIPSET, AMD_VGA], false),
                Rocm,
            ),
            (
                "AMD 3D controller",
                "x86_64",
                facts(None, &[AMD_3D], false),
                Rocm,
            ),
            (
                "AMD HDMI audio only",
                "x86_64",
                facts(None, &[AMD_AUDIO], false),
                NONE,
            ),
            (
                "AMD GPU beside an NVIDIA driver",
                "x86_64",
                facts(None, &[AMD_VGA, NVIDIA_VGA], true),
                NONE,
            ),
            (
                "NVIDIA GPU",
                "x86_64",
                facts(None, &[NVIDIA_VGA], true),
                NONE,
            ),
            (
                "AMD GPU on arm64: no ROCm archive",
                "aarch64",
                facts(None, &[AMD_VGA], false),
                NONE,
            ),
            (
                "Jetson Orin, JetPack 6",
                "aarch64",
                facts(Some(r36), &[], false),
                JetPack6,
            ),
            (
                "Jetson Xavier, JetPack 5",
                "aarch64",
                facts(Some(r35), &[], false),
                JetPack5,
            ),
            (
                "Jetson Nano, JetPack 4: none",
                "aarch64",
                facts(Some(r32), &[], false),
                NONE,
            ),
            (
                "tegra file on x86_64",
                "x86_64",
                facts(Some(r36), &[AMD_VGA], false),
                NONE,
            ),
            (
                "Jetson wins over PCI",
                "aarch64",
                facts(Some(r36), &[AMD_VGA], false),
                JetPack6,
            ),
        ];
        for (case, arch, facts, expected) in cases {
            assert_eq!(choose_accelerator(arch, &facts), expected, "{case}");
        }
    }

    #[test]
    fn asset_table() {
        let main = |name: &str, format| Asset {
            name: name.to_owned(),
            format,
        };
        let zst = main("ollama-linux-amd64.tar.zst", ArchiveFormat::TarZst);
        let tgz = main("ollama-linux-arm64.tgz", ArchiveFormat::Tgz);
        let cases = [
            (
                &zst,
                Accelerator::Rocm,
                Some("ollama-linux-amd64-rocm.tar.zst"),
            ),
            (&zst, Accelerator::None, None),
            (
                &tgz,
                Accelerator::JetPack6,
                Some("ollama-linux-arm64-jetpack6.tgz"),
            ),
            (
                &tgz,
                Accelerator::JetPack5,
                Some("ollama-linux-arm64-jetpack5.tgz"),
            ),
        ];
        for (main, accel, expected) in cases {
            let got = accelerator_asset(main, accel);
            assert_eq!(got.as_ref().map(|a| a.name.as_str()), expected, "{accel:?}");
            if let Some(got) = got {
                assert_eq!(got.format, main.format);
            }
        }
        let zip = main("ollama-windows-amd64.zip", ArchiveFormat::Zip);
        assert_eq!(accelerator_asset(&zip, Accelerator::Rocm), None);
        let darwin = main("ollama-darwin.tgz", ArchiveFormat::Tgz);
        assert_eq!(accelerator_asset(&darwin, Accelerator::Rocm), None);
    }

    #[test]
    fn sysfs_hex_table() {
        assert_eq!(sysfs_hex("0x1002\n"), Some(0x1002));
        assert_eq!(sysfs_hex("0x030000"), Some(0x030000));
        assert_eq!(sysfs_hex("1002"), None);
        assert_eq!(sysfs_hex("0xzz"), None);
    }
}
