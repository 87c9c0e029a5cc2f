//! `cargo xtask`: build, run, test and benchmark xenith. `cargo xtask help` lists the commands.

mod arm32;
mod build;
mod conformance;
mod console;
mod dom0less;
mod elf;
mod env;
mod extregions;
mod fixtures;
mod health;
mod linux;
mod overhead;
mod qemu;
mod snow;
mod uboot;
mod snow_log;
mod stress;
mod systest;
mod toolstack;
mod vulnerabilities;
mod xl_domu;

use env::Result;
use std::path::PathBuf;
use std::process::Command;

const HELP: &str = "\
cargo xtask <command>

  setup              install what is missing: Rust targets, QEMU >= 9.2 (bookworm-backports, as root), and
                     for `snow` u-boot-tools, vboot-kernel-utils, cgpt, device-tree-compiler, e2fsprogs
  build              build xenith and the test guest as raw arm64 Images under target/xenith/
  run [options]      boot xenith + dom0 on QEMU virt (GICv3, SMMUv3 stage 2); QEMU exits when dom0 shuts down
      --dom0 PATH        boot this kernel as dom0 instead of the test guest
                         (`linux`: Debian's arm64 kernel + a busybox initramfs, fetched and cached;
                         `linux-backports`: bookworm-backports' 6.12 kernel, same initramfs)
      --dom0-args ARGS   dom0's command line (default: console=hvc0)
      --initrd PATH      dom0's initrd
      --domu PATH        also boot this kernel as a dom0less domU (`guest`: the test guest, which then
                         trades a grant and events with a test-guest dom0); QEMU gets one more CPU
      --append ARGS      xenith's command line (e.g. dom0_mem=512M)
      --toolstack        with --dom0 linux: Debian's xen-utils-4.17 in dom0's initramfs; /init starts
                         xenstored, xen-init-dom0 and xenconsoled, runs xl info, xl list, xl vcpu-list,
                         then xl create of a 2-vCPU Linux domU (disk, vif), xl console, xl destroy
      --smmu-stage S     QEMU SMMUv3 model stage: 2 (default), 1, nested
      --gic 2|3          QEMU virt's interrupt controller: GICv3 (default) or GICv2 (gic-version=2)
      -- QEMU-ARGS...    extra QEMU arguments
  run --arch arm32 [--dom0 PATH|none] [--dom0-args A] [--initrd P] [--append A] [-- QEMU-ARGS]
                     xenith in HYP mode on qemu-system-arm -M virt,virtualization=on,highmem=off
                     -cpu cortex-a15 (GICv2); dom0 is the arm32 test guest unless --dom0 says
  test               host tests (cargo test), the QEMU system tests, then the conformance diffs
                     (AArch64, then arm32)
  systest [NAME]     only the QEMU system tests (those whose name contains NAME)
  conformance [--against xen] [--cpu cortex-a57|max] [--gic 2|3]
                     run the test guest on xenith and diff its `case` lines with real Xen 4.17's
                     (tests/conformance/): the whole table on cortex-a57 with GICv3 and again with
                     GICv2 (`-gicv2` files), the cpu.* cases on max; `--gic N` only that GIC's run;
                     `--against xen` re-records Xen's values (for cortex-a57 unless --cpu says);
                     `--against xen --vulnerabilities` re-records Linux dom0's
                     /sys/devices/system/cpu/vulnerabilities/* on Xen 4.17 (both CPUs unless --cpu says);
                     `--against xen --console` the bytes Xen 4.17 puts on the UART for dom0's console
  conformance --arch arm32 [--against xen]
                     the arm32 test guest on xenith in HYP mode (qemu-system-arm cortex-a15) diffed
                     with Debian's Xen 4.17 armhf (tests/conformance/expected-xen-4.17-armhf.txt);
                     `--against xen` re-records Xen's values
  bench              the guest's round trips (null hypercall, grant map+unmap), one trapped access or
                     interrupt of each kind (exit_*), the noise figure, edu DMA, Linux dom0's virtio-blk
                     reads nested vs stage 2 alone, and host-side figures, measured by the guest under
                     -icount shift=0
      --only xl          only `xl create` -> domU marker (through `xl console`) on xenith and Xen 4.17:
                         Linux dom0 with Xen's toolstack creates a 2-vCPU Linux domU (disk, vif); wall
                         seconds (median of 3 boots each) and dom0's guest seconds under -icount (one
                         boot each); non-zero exit when either fails or xenith is slower under -icount
      --only nested      only the virtio-blk read bench: dom0's stage 1 nested over xenith's stage 2 vs
                         stage 2 alone, ratio and verdict (non-zero exit below 0.8x)
      --only exits [--smp N] [--gic 2|3] [--against xen]
                         only the null hypercall and the per-exit costs (one boot); beside Xen 4.17's
                         figures, measured with --against xen (then kept in target/) or the kept
                         ones; non-zero exit when one is over Xen's; --smp N: N CPUs, dom0 with N
                         vCPUs on both (the guest runs on vCPU 0); --gic 2: QEMU virt with
                         gic-version=2 (no GICR rows there)
      --against xen      round trips and per-exit costs on xenith and Xen 4.17 and their ratio, the Linux
                         dom0 boot, the boot overhead, the noise figure and xl create -> domU marker
                         (--only xl) on both
      --boot-overhead    instructions to dom0's /init over bare Linux, xenith vs Xen 4.17 (also part of --against xen)
      --noise            dom0's null hypercall while two dom0less domUs loop on hypercalls vs while they
                         idle, on xenith and Xen 4.17 (also part of bench and --against xen)
  bench --arch arm32 [--against xen | --only icount | --only exits [--against xen]]
                     ARMv7-A: the arm32 test guest's null hypercall in instructions under -icount
                     shift=0 on xenith in HYP mode; `--against xen` the same and its per-exit costs
                     (GICD read/write, SGI to self, vtimer tick, SPI) on Debian's Xen 4.17 armhf and
                     Linux dom0's time to its marker on both, with the verdicts (null hypercall
                     <= 0.5x Xen's, each exit <= Xen's, time <= Xen's; non-zero exit when one is
                     missed); `--only icount` only Linux dom0 on both under -icount shift=0,sleep=off:
                     dom0's uptime at its marker (guest seconds) and the verdict (<= Xen's);
                     `--only exits` only the test guest's null hypercall and per-exit costs (beside
                     Xen 4.17 armhf's with --against xen; non-zero exit when an exit is over Xen's)
  stress [options]   SMP dom0 stress suite: Debian's Linux as dom0 runs grant, balloon, evtchn, privcmd,
                     memory and virtio-blk DMA workloads on every vCPU at once; per-workload ops,
                     errors, integrity and dom0's health per boot; PASS/FAIL (non-zero exit on FAIL)
      --against xen      also run it on Debian's Xen 4.17 (its disk without the SMMU), side by side
      --xen-only         only on Xen 4.17 (checks the suite itself)
      --vcpus N          QEMU CPUs = dom0 vCPUs (default 4)
      --secs S           seconds of load per boot (default 60; guest seconds with --icount)
      --boots K          boots per hypervisor (default 1)
      --icount           -icount shift=0,sleep=off: ops per guest second compare instructions
      --only W,W         only these workloads (grant,balloon,evtchn,privcmd,memory,dma)
  snow               the Chromebook Snow's SD card image (target/xenith/snow/xenith-snow-sd.img): a FIT of
                     xenith (arm32), Debian's armmp-lpae kernel and the busybox initramfs as dom0 and
                     Debian's exynos5250-snow.dtb, signed as a Chrome OS kernel partition (developer
                     keys) in a GPT image; then read back with cgpt, vbutil_kernel and dumpimage
  snow-log [DUMP]    decode a dump of xenith's RAM log ring on the Snow (raw, `devmem` words or U-Boot
                     `md.l` output); without DUMP, how to take one from dom0 or U-Boot
  fixtures           fetch/produce the host-test fixtures (QEMU virt DTBs, the Snow DTB) into .cache/fixtures
";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("setup") => setup(),
        Some("build") => setup().and_then(|_| build::all()).map(|_| ()),
        Some("run") if args.get(1).map(String::as_str) == Some("--arch") => match args.get(2).map(String::as_str) {
            Some("arm32") => setup().and_then(|_| arm32::run(&args[3..])),
            Some("aarch64") => run(&args[3..]),
            other => Err(format!("run --arch: unknown architecture {other:?} (aarch64 or arm32)")),
        },
        Some("run") => run(&args[1..]),
        Some("test") => test(),
        Some("bench") if args.get(1).map(String::as_str) == Some("--arch") => match args.get(2).map(String::as_str) {
            Some("arm32") => setup().and_then(|_| arm32::bench(&args[3..])),
            Some("aarch64") => bench(),
            other => Err(format!("bench --arch: unknown architecture {other:?} (aarch64 or arm32)")),
        },
        Some("bench") if args.get(1).map(String::as_str) == Some("--against") => {
            setup().and_then(|_| build::all()).and_then(|i| conformance::bench_against_xen(&i))
        }
        Some("bench") if args.get(1).map(String::as_str) == Some("--boot-overhead") => setup()
            .and_then(|_| build::all())
            .and_then(|i| overhead::bench(i.hypervisor.clone(), fixtures::xen_4_17()?)),
        Some("bench") if args.get(1).map(String::as_str) == Some("--noise") => setup().and_then(|_| build::all()).and_then(|i| {
            println!("noise: dom0 (1 vCPU) null hypercall, median of short windows under -icount, two dom0less domUs idle vs looping:");
            let (idle, busy) = conformance::noise_run(i.hypervisor.clone(), "", i.test_guest.clone())?;
            conformance::print_noise("xenith", &idle, &busy);
            let (idle, busy) = conformance::noise_run(fixtures::xen_4_17()?, conformance::XEN_BENCH_CMDLINE, i.test_guest.clone())?;
            conformance::print_noise("Xen 4.17", &idle, &busy);
            Ok(())
        }),
        Some("bench") if args.get(1).map(String::as_str) == Some("--only") => match args.get(2).map(String::as_str) {
            Some("nested") => setup().and_then(|_| build::all()).and_then(|i| systest::blkbench(&i)).and_then(|met| {
                met.then_some(()).ok_or_else(|| format!("nested virtio-blk read throughput below {}x of stage 2 alone", systest::BLKBENCH_TARGET))
            }),
            Some("exits") => exits_bench_args(args.get(3..).unwrap_or_default())
                .and_then(|(against, smp, gic)| setup().and_then(|_| build::all()).and_then(|i| conformance::bench_exits(&i, against, smp, gic))),
            Some("xl") => setup().and_then(|_| build::all()).and_then(|i| toolstack::bench_against_xen(i.hypervisor.clone(), fixtures::xen_4_17()?)),
            other => Err(format!("bench --only: unknown part {other:?} (nested, exits, xl)")),
        },
        Some("bench") => bench(),
        Some("conformance") if args.get(1).map(String::as_str) == Some("--arch") && args.get(2).map(String::as_str) == Some("arm32") => {
            setup().and_then(|_| arm32::conformance(&args[3..])).map(|_| ())
        }
        Some("conformance") => setup().and_then(|_| conformance::main(&args[1..])),
        Some("systest") => setup()
            .and_then(|_| fixtures::all())
            .and_then(|_| build::all())
            .and_then(|i| systest::run_matching(&i, args.get(1).map(String::as_str)))
            .map(|_| ()),
        Some("fixtures") => setup().and_then(|_| fixtures::all()),
        Some("snow") => setup().and_then(|_| snow::main(&args[1..])).map(|_| ()),
        Some("snow-log") => snow_log::main(&args[1..]),
        Some("stress") => setup().and_then(|_| stress::main(&args[1..])),
        Some("help") | Some("--help") | Some("-h") | None => {
            print!("{HELP}");
            Ok(())
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{HELP}")),
    };
    if let Err(e) = result {
        eprintln!("xtask: error: {e}");
        std::process::exit(1);
    }
}

fn setup() -> Result<()> {
    env::ensure_rust_targets()?;
    env::ensure_qemu()?;
    // Only `cargo xtask snow` (and `test`, which runs its check) needs these: a user who cannot
    // install them can still run everything else.
    if let Err(e) = env::ensure_snow_tools() {
        eprintln!("xtask: note: {e} (needed by `cargo xtask snow`)");
    }
    Ok(())
}

fn run(args: &[String]) -> Result<()> {
    setup()?;
    let images = build::all()?;
    let mut boot = qemu::Boot::new(images.hypervisor.clone());
    boot.dom0 = Some(images.test_guest.clone());
    boot.echo = true;
    boot.timeout = std::time::Duration::from_secs(24 * 3600);
    let mut linux_dom0 = false;
    let mut with_toolstack = false;
    let mut domu: Option<PathBuf> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--dom0" => match value()?.as_str() {
                // Debian's arm64 kernel with a busybox initramfs (linux.rs).
                "linux" => {
                    linux::use_for(&mut boot)?;
                    linux_dom0 = true;
                }
                // bookworm-backports' 6.12 kernel, same initramfs (it uses the extended regions).
                "linux-backports" => {
                    linux::use_kernel_from(&mut boot, env::Suite::Backports)?;
                    linux_dom0 = true;
                }
                path => boot.dom0 = Some(PathBuf::from(path)),
            },
            "--dom0-args" => boot.dom0_args = value()?,
            "--initrd" => boot.initrd = Some(PathBuf::from(value()?)),
            "--domu" => {
                domu = Some(match value()?.as_str() {
                    "guest" => images.test_guest.clone(),
                    path => PathBuf::from(path),
                })
            }
            "--append" => boot.cmdline = value()?,
            "--toolstack" => with_toolstack = true,
            "--smmu-stage" => boot.smmu_stage = value()?,
            "--gic" => {
                boot.gic = match value()?.as_str() {
                    "2" => 2,
                    "3" => 3,
                    other => return Err(format!("--gic: 2 or 3, got `{other}`")),
                }
            }
            "--" => {
                boot.extra.extend(it.by_ref().cloned());
                break;
            }
            other => return Err(format!("unknown option `{other}` for run\n\n{HELP}")),
        }
    }
    // `-- -smp N` sets the machine's CPU count (QEMU takes the last -smp given).
    if let Some(n) = qemu_smp(&boot.extra) {
        boot.smp = n;
    }
    if with_toolstack {
        if !linux_dom0 {
            return Err("--toolstack goes with --dom0 linux (Xen's toolstack runs in Linux dom0's initramfs)".into());
        }
        toolstack::use_for(&mut boot)?;
    }
    if linux_dom0 {
        if boot.initrd.is_some() {
            return Err("--initrd cannot be combined with --dom0 linux: that dom0 brings its own initramfs (build your own and give it with --dom0 PATH --initrd PATH)".into());
        }
        if !boot.cmdline.split_whitespace().any(|w| w.starts_with("dom0_max_vcpus=")) {
            // Linux dom0 gets one vCPU per CPU of the QEMU machine.
            boot.cmdline = format!("{} dom0_max_vcpus={}", boot.cmdline, boot.smp).trim().to_string();
        }
    }
    if let Some(d) = &boot.dom0 {
        if !d.exists() {
            return Err(format!("dom0 kernel {} does not exist", d.display()));
        }
    }
    if let Some(k) = domu {
        if !k.exists() {
            return Err(format!("domU kernel {} does not exist", k.display()));
        }
        // The domU runs on a CPU of its own (xenith pins one vCPU per CPU).
        boot.smp += 1;
        if boot.dom0.as_ref() == Some(&images.test_guest) && k == images.test_guest {
            boot.dom0_args.push_str(" domu-peer");
        }
        boot = conformance::with_domu(boot, &k, "run")?;
    }
    let out = boot.run()?;
    if let Some(lines) = out.trouble() {
        return Err(format!("the console reports trouble (QEMU {}):\n{}", ended(&out), lines.join("\n")));
    }
    if out.exit_code != Some(0) {
        return Err(format!("QEMU {}", ended(&out)));
    }
    Ok(())
}

/// The CPU count of the last `-smp N[,...]` (or `-smp cpus=N,...`) among QEMU arguments.
fn qemu_smp(extra: &[String]) -> Option<u32> {
    let i = extra.iter().rposition(|a| a == "-smp")?;
    let v = extra.get(i + 1)?;
    v.split(',').find_map(|part| part.strip_prefix("cpus=").unwrap_or(part).parse().ok())
}

/// How a boot ended, in words.
fn ended(out: &qemu::Outcome) -> String {
    match (out.timed_out, out.exit_code) {
        (true, _) => "was stopped (no exit in time)".into(),
        (false, Some(c)) => format!("exited with {c}"),
        (false, None) => "was killed by a signal".into(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn smp_from_qemu_arguments() {
        let a = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(super::qemu_smp(&a(&["-cpu", "max", "-smp", "4"])), Some(4));
        assert_eq!(super::qemu_smp(&a(&["-smp", "2", "-smp", "cpus=3,sockets=1"])), Some(3));
        assert_eq!(super::qemu_smp(&a(&["-m", "4G"])), None);
    }
}

fn test() -> Result<()> {
    setup()?;
    fixtures::all()?;
    let root = env::root();
    eprintln!("xtask: host tests");
    let host = host_tests(&root)?;
    // The Snow's SD card image, built and read back with the real tools (no QEMU).
    eprintln!("xtask: the Snow's SD card image");
    let snow = snow::main(&[])?;
    let images = build::all()?;
    let system = systest::run_all(&images)?;
    let mut conformance = conformance::check(&images)?;
    // ARMv7-A: the arm32 test guest as dom0 of xenith in HYP mode, diffed with Xen 4.17 armhf.
    eprintln!("xtask: arm32 conformance (qemu-system-arm, cortex-a15)");
    conformance += arm32::conformance(&[])?;
    // One closing line for the whole run (every stage above stops the run on a failure).
    println!("host {host}, snow image {snow}, system {system}, conformance {conformance}");
    println!("tests: {} passed, 0 failed", host as usize + snow + system as usize + conformance);
    Ok(())
}

/// `cargo test` over the host crates, then the hypervisor's `loom` model checks (its own build
/// with `--cfg loom`, in a target directory of its own so the normal build is not redone),
/// output passed through; the number of tests that passed.
fn host_tests(root: &std::path::Path) -> Result<u64> {
    let mut plain = Command::new("cargo");
    plain.args(["test", "--workspace", "--exclude", "test-guest"]);
    let mut loom = Command::new("cargo");
    loom.args(["test", "-p", "xenith-hypervisor", "--lib", "--release", "loom"])
        .env("RUSTFLAGS", "--cfg loom")
        .env("CARGO_TARGET_DIR", root.join("target").join("loom"));
    let mut passed = run_tests(plain, root)?;
    eprintln!("xtask: loom model checks");
    passed += run_tests(loom, root)?;
    Ok(passed)
}

/// Run one `cargo test` command, passing its output through; the number of tests that passed.
fn run_tests(mut cmd: Command, root: &std::path::Path) -> Result<u64> {
    use std::io::{BufRead, BufReader};
    let mut child = cmd
        .current_dir(root)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo test: {e}"))?;
    let mut passed = 0u64;
    if let Some(out) = child.stdout.take() {
        for line in BufReader::new(out).lines().map_while(|l| l.ok()) {
            println!("{line}");
            if let Some(rest) = line.strip_prefix("test result: ok. ") {
                passed += rest.split(' ').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or(0);
            }
        }
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    if !status.success() {
        return Err(format!("host tests failed: {status}"));
    }
    Ok(passed)
}

/// `bench --only exits` options: `--against xen`, `--smp N`.
fn exits_bench_args(args: &[String]) -> Result<(bool, Option<u32>, u8)> {
    let (mut against, mut smp, mut gic) = (false, None, 3);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match (a.as_str(), it.clone().next().map(String::as_str)) {
            ("--against", Some("xen")) => against = true,
            ("--smp", Some(n)) => smp = Some(n.parse::<u32>().ok().filter(|n| (1..=8).contains(n)).ok_or(format!("--smp: 1 to 8, got {n}"))?),
            ("--gic", Some(n)) => gic = n.parse::<u8>().ok().filter(|n| matches!(n, 2 | 3)).ok_or(format!("--gic: 2 or 3, got {n}"))?,
            _ => return Err(format!("bench --only exits: unknown option {a:?} (--against xen, --smp N, --gic 2|3)")),
        }
        it.next();
    }
    Ok((against, smp, gic))
}

fn bench() -> Result<()> {
    setup()?;
    let images = build::all()?;
    systest::bench(&images)
}
