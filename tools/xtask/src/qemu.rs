//! Booting xenith (or another hypervisor) under QEMU virt and collecting what it prints.

use crate::env::Result;
use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Where `-device guest-loader` puts dom0's kernel and initrd (as in the Xen reference setup).
pub const DOM0_KERNEL_ADDR: u64 = 0x4900_0000;
pub const DOM0_INITRD_ADDR: u64 = 0x4b20_0000;

/// One QEMU virt (AArch64) boot.
#[derive(Clone, Debug)]
pub struct Boot {
    /// The hypervisor image given to `-kernel` (a raw arm64 Image, or an ELF to test x0 = 0).
    pub hypervisor: PathBuf,
    /// The hypervisor's command line (`-append`, i.e. /chosen/bootargs).
    pub cmdline: String,
    pub dom0: Option<PathBuf>,
    pub dom0_args: String,
    pub initrd: Option<PathBuf>,
    /// The SMMUv3 model: "2" (QEMU 10's virt: stage 1 + stage 2) or "1" (stage 1 only, as
    /// QEMU < 9.2 has it: QEMU 10's `virt` always makes it nested, so this uses `virt-9.0`).
    pub smmu_stage: String,
    /// QEMU's CPU model (`-cpu`).
    pub cpu: String,
    /// The interrupt controller: `gic-version=` 3 (default) or 2.
    pub gic: u8,
    pub smp: u32,
    pub mem: String,
    /// `-icount shift=0,sleep=off`: the guest counter counts instructions (benchmarks).
    pub icount: bool,
    pub extra: Vec<String>,
    /// `-dtb`: a device tree to boot with instead of QEMU's own (e.g. one with dom0less domUs).
    pub dtb: Option<PathBuf>,
    /// `dumpdtb=`: write QEMU's device tree for this exact machine and exit.
    pub dumpdtb: Option<PathBuf>,
    pub timeout: Duration,
    /// Once a console line reports trouble (`health::is_trouble`: an oops, a panic, a
    /// hypervisor bug), how long QEMU may go on before it is stopped: time for the hypervisor
    /// to act on a crashed dom0 (Xen restarts the machine 5 s after), not the whole timeout.
    pub trouble_grace: Duration,
    /// Echo the output live (interactive `run`).
    pub echo: bool,
    /// ARMv7 only: QEMU virt with `secure=on`, the hypervisor loaded bare and entered in Secure
    /// SVC mode through a firmware stub, as the Snow's firmware enters it (arm32.rs).
    pub secure: bool,
    /// Stop QEMU a second after a console line contains this (a machine that cannot power
    /// itself off); such a boot does not count as timed out.
    pub stop_at: Option<String>,
    /// ARMv7 only: `hypervisor` is firmware for `-bios` (a U-Boot that loads the rest), not
    /// a `-kernel` image.
    pub bios: bool,
}

impl Boot {
    pub fn new(hypervisor: PathBuf) -> Self {
        Self {
            hypervisor,
            cmdline: String::new(),
            dom0: None,
            dom0_args: "console=hvc0".into(),
            initrd: None,
            smmu_stage: "2".into(),
            cpu: "cortex-a57".into(),
            gic: 3,
            smp: 2,
            mem: "2G".into(),
            icount: false,
            extra: Vec::new(),
            dtb: None,
            dumpdtb: None,
            timeout: Duration::from_secs(60),
            trouble_grace: Duration::from_secs(15),
            echo: false,
            secure: false,
            stop_at: None,
            bios: false,
        }
    }

    pub fn command(&self) -> Command {
        // The ARMv7 machine is its own QEMU (arm32.rs).
        if self.cpu == crate::arm32::CPU {
            return crate::arm32::command(self);
        }
        let mut c = Command::new("qemu-system-aarch64");
        let dump = self.dumpdtb.as_ref().map(|p| format!(",dumpdtb={}", p.display())).unwrap_or_default();
        if self.smmu_stage == "1" {
            c.args(["-M", &format!("virt-9.0,virtualization=on,gic-version={},iommu=smmuv3{dump}", self.gic)]);
        } else {
            c.args(["-M", &format!("virt,virtualization=on,gic-version={},iommu=smmuv3{dump}", self.gic)])
                .args(["-global", &format!("arm-smmuv3.stage={}", self.smmu_stage)]);
        }
        if let Some(d) = &self.dtb {
            c.arg("-dtb").arg(d);
        }
        c
            .args(["-cpu", &self.cpu, "-smp", &self.smp.to_string(), "-m", &self.mem])
            .args(["-nographic", "-no-reboot", "-monitor", "none", "-serial", "stdio"])
            .arg("-kernel")
            .arg(&self.hypervisor);
        if !self.cmdline.is_empty() {
            c.args(["-append", &self.cmdline]);
        }
        if let Some(k) = &self.dom0 {
            c.args(["-device", &format!("guest-loader,addr={DOM0_KERNEL_ADDR:#x},kernel={},bootargs={}", k.display(), self.dom0_args.replace(',', ",,"))]);
        }
        if let Some(i) = &self.initrd {
            c.args(["-device", &format!("guest-loader,addr={DOM0_INITRD_ADDR:#x},initrd={}", i.display())]);
        }
        if self.icount {
            c.args(["-icount", "shift=0,sleep=off"]);
        }
        c.args(&self.extra);
        c
    }

    /// Boot, wait for QEMU to exit (or kill it at the timeout), return what it printed.
    pub fn run(&self) -> Result<Outcome> {
        self.run_command(self.command())
    }

    /// [`Boot::run`] with another QEMU command line (another machine, e.g. `qemu-system-arm`),
    /// keeping this boot's timeout, echo and trouble handling.
    pub fn run_command(&self, mut cmd: Command) -> Result<Outcome> {
        if self.echo {
            eprintln!("xtask: {}", shell_line(&cmd));
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
        let out = Arc::new(Mutex::new(String::new()));
        // QEMU's stdout (the serial console) byte for byte.
        let raw = Arc::new(Mutex::new(Vec::new()));
        let start = Instant::now();
        // When the first trouble line arrived (since `start`).
        let trouble_at: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
        // When a line containing `stop_at` arrived.
        let stop_seen: Arc<Mutex<Option<Duration>>> = Arc::new(Mutex::new(None));
        let mut readers = Vec::new();
        for (stream, echo, keep_raw) in [(child.stdout.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), self.echo, true), (child.stderr.take().map(|s| Box::new(s) as Box<dyn std::io::Read + Send>), self.echo, false)] {
            let Some(stream) = stream else { continue };
            let out = Arc::clone(&out);
            let raw = Arc::clone(&raw);
            let trouble_at = Arc::clone(&trouble_at);
            let stop_seen = Arc::clone(&stop_seen);
            let stop_at = self.stop_at.clone();
            readers.push(std::thread::spawn(move || {
                let mut reader = BufReader::new(stream);
                let mut bytes = Vec::new();
                while reader.read_until(b'\n', &mut bytes).is_ok_and(|n| n > 0) {
                    if keep_raw {
                        if let Ok(mut r) = raw.lock() {
                            r.extend_from_slice(&bytes);
                        }
                    }
                    let line = String::from_utf8_lossy(bytes.strip_suffix(b"\n").unwrap_or(&bytes)).replace('\r', "");
                    bytes.clear();
                    if crate::health::is_trouble(&line) {
                        if let Ok(mut t) = trouble_at.lock() {
                            t.get_or_insert(start.elapsed());
                        }
                    }
                    if stop_at.as_deref().is_some_and(|s| line.contains(s)) {
                        if let Ok(mut t) = stop_seen.lock() {
                            t.get_or_insert(start.elapsed());
                        }
                    }
                    if echo {
                        let _ = writeln!(std::io::stdout(), "{line}");
                    }
                    if let Ok(mut o) = out.lock() {
                        o.push_str(&line);
                        o.push('\n');
                    }
                }
            }));
        }
        let (status, timed_out) = loop {
            if let Some(st) = child.try_wait().map_err(|e| e.to_string())? {
                break (Some(st), false);
            }
            let trouble = trouble_at.lock().ok().and_then(|t| *t);
            let give_up = trouble.map_or(self.timeout, |t| self.timeout.min(t + self.trouble_grace));
            if let Some(t) = stop_seen.lock().ok().and_then(|t| *t) {
                if start.elapsed() > t + Duration::from_secs(1) {
                    let _ = child.kill();
                    let _ = child.wait();
                    break (None, false);
                }
            }
            if start.elapsed() > give_up {
                let _ = child.kill();
                let _ = child.wait();
                break (None, true);
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        for r in readers {
            let _ = r.join();
        }
        let output = out.lock().map(|o| o.clone()).unwrap_or_default();
        let raw = raw.lock().map(|r| r.clone()).unwrap_or_default();
        let trouble_at = trouble_at.lock().ok().and_then(|t| *t);
        Ok(Outcome { output, raw, exit_code: status.and_then(|s| s.code()), timed_out, wall: start.elapsed(), trouble_at })
    }
}

/// What a boot printed and how it ended.
#[derive(Debug)]
pub struct Outcome {
    /// The console as lines (lossy UTF-8, `\r` dropped).
    pub output: String,
    /// QEMU's stdout (the serial console) exactly as it came.
    pub raw: Vec<u8>,
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    pub wall: Duration,
    /// When the first console line reporting trouble arrived (`health::is_trouble`).
    pub trouble_at: Option<Duration>,
}

impl Outcome {
    pub fn has(&self, needle: &str) -> bool {
        self.output.contains(needle)
    }

    /// The lines around the first trouble report, if the console shows one.
    pub fn trouble(&self) -> Option<Vec<String>> {
        crate::health::report(&self.output)
    }
}

/// A command as a shell line, for the README and logs.
pub fn shell_line(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        let a = a.to_string_lossy();
        if a.contains(' ') || a.contains('"') {
            s.push_str(&format!(" '{a}'"));
        } else {
            s.push(' ');
            s.push_str(&a);
        }
    }
    s
}
