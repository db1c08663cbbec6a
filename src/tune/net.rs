//! Best-effort check that network receive work is not funnelled onto one CPU.
//!
//! NIC interrupts are found from each interface's MSI vectors (`/sys/class/net/<if>/device/msi_irqs`,
//! or its parent's for virtio), and where they land from `/proc/irq/<n>/effective_affinity_list`
//! (what the kernel really uses) or else `smp_affinity_list`. If they all land on one CPU on a host with
//! several, receive processing for every shard's connections runs there, unless RPS
//! (`queues/rx-*/rps_cpus`) spreads it. Anything unreadable makes the answer "not determinable": a Pass,
//! since this is advice.

use std::collections::BTreeSet;
use std::fs;
use std::path::PathBuf;

use super::sysfs;
use super::{CheckResult, Ctx};

const NAME: &str = "irq_spread";

/// Interfaces with a device behind them, and the MSI IRQ numbers of each.
fn nic_irqs(ctx: &Ctx<'_>) -> Result<Vec<(String, Vec<u32>)>, String> {
    let net = ctx.path("sys/class/net");
    let mut nics = Vec::new();
    for iface in sysfs::list_dir(&net).map_err(|e| e.to_string())? {
        let device = net.join(&iface).join("device");
        if iface == "lo" || !device.exists() {
            continue;
        }
        let irqs = msi_irqs(device);
        if !irqs.is_empty() {
            nics.push((iface, irqs));
        }
    }
    Ok(nics)
}

/// MSI vectors of a device, looking one level up for virtio (whose PCI parent owns the vectors).
fn msi_irqs(device: PathBuf) -> Vec<u32> {
    let mut dirs = vec![device.join("msi_irqs")];
    if let Some(parent) = fs::canonicalize(&device).ok().and_then(|d| d.parent().map(|p| p.join("msi_irqs"))) {
        dirs.push(parent);
    }
    dirs.iter()
        .find_map(|d| sysfs::list_dir(d).ok())
        .map(|names| names.iter().filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// CPUs an IRQ is delivered to, preferring the effective affinity.
fn irq_cpus(ctx: &Ctx<'_>, irq: u32) -> Result<Vec<u32>, String> {
    let dir = ctx.path(&format!("proc/irq/{irq}"));
    let text = sysfs::read_knob(&dir.join("effective_affinity_list"))
        .or_else(|_| sysfs::read_knob(&dir.join("smp_affinity_list")))
        .map_err(|e| e.to_string())?;
    sysfs::parse_cpu_list(&text).ok_or_else(|| format!("{}: unparseable CPU list {text:?}", dir.display()))
}

/// True when any receive queue of `iface` steers packets to more than one CPU.
fn rps_spreads(ctx: &Ctx<'_>, iface: &str) -> bool {
    let queues = ctx.path(&format!("sys/class/net/{iface}/queues"));
    let Ok(names) = sysfs::list_dir(&queues) else {
        return false;
    };
    names.iter().filter(|q| q.starts_with("rx-")).any(|q| {
        sysfs::read_knob(&queues.join(q).join("rps_cpus"))
            .ok()
            .and_then(|mask| sysfs::mask_cpu_count(&mask))
            .is_some_and(|n| n > 1)
    })
}

pub(crate) fn irq_spread(ctx: &Ctx<'_>) -> CheckResult {
    let cpus = ctx.cpus_online();
    if cpus <= 1 {
        return CheckResult::pass(NAME, "one CPU online: nothing to spread");
    }
    let nics = match nic_irqs(ctx) {
        Ok(nics) if !nics.is_empty() => nics,
        Ok(_) => return CheckResult::pass(NAME, "not determinable: no NIC MSI interrupts found"),
        Err(why) => return CheckResult::pass(NAME, format!("not determinable: {why}")),
    };
    let mut targets = BTreeSet::new();
    let mut irq_count = 0;
    for irq in nics.iter().flat_map(|(_, irqs)| irqs) {
        match irq_cpus(ctx, *irq) {
            Ok(list) => targets.extend(list),
            Err(why) => return CheckResult::pass(NAME, format!("not determinable: {why}")),
        }
        irq_count += 1;
    }
    let names: Vec<_> = nics.iter().map(|(n, _)| n.as_str()).collect();
    if targets.len() != 1 {
        let why = format!("{irq_count} IRQs of {} on {} of {cpus} CPUs", names.join(", "), targets.len());
        return CheckResult::pass(NAME, why);
    }
    let cpu = targets.first().copied().unwrap_or(0);
    if let Some(iface) = names.iter().find(|n| rps_spreads(ctx, n)) {
        return CheckResult::pass(NAME, format!("all NIC IRQs on CPU {cpu}, RPS spreads {iface}'s receive work"));
    }
    let why = format!(
        "all {irq_count} IRQs of {} on CPU {cpu} of {cpus}, RPS off: one core does every shard's receive work",
        names.join(", ")
    );
    CheckResult::warn(NAME, why, irq_fix(names.first().copied().unwrap_or("eth0"), cpus))
}

fn irq_fix(iface: &str, cpus: usize) -> String {
    let mask = if cpus >= 64 { "ffffffff,ffffffff".to_string() } else { format!("{:x}", (1u64 << cpus) - 1) };
    format!(
        "systemctl enable --now irqbalance, or pin each queue's IRQ: echo <cpu> > /proc/irq/<n>/smp_affinity_list, \
         or enable RPS: echo {mask} > /sys/class/net/{iface}/queues/rx-0/rps_cpus"
    )
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::super::Status;
    use super::super::testkit::*;

    /// eth0 with the given MSI IRQs, each delivered to `cpus`.
    fn nic_tree(tree: &Tree, irqs: &[(u32, &str)]) {
        tree.write("sys/devices/system/cpu/online", "0-3\n");
        tree.write("sys/devices/pci0/net/eth0/queues/rx-0/rps_cpus", "0\n");
        tree.link("sys/class/net/eth0", "../../devices/pci0/net/eth0");
        tree.link("sys/devices/pci0/net/eth0/device", "../..");
        tree.mkdir("sys/class/net/lo");
        for (irq, cpus) in irqs {
            tree.write(&format!("sys/devices/pci0/msi_irqs/{irq}"), "msix\n");
            tree.write(&format!("proc/irq/{irq}/smp_affinity_list"), cpus);
        }
    }

    #[test]
    fn irq_spread_paths() {
        let tree = Tree::new();
        let r = check(&tree, "irq_spread");
        assert_eq!(r.status, Status::Pass);
        assert!(r.observed.starts_with("not determinable"), "{}", r.observed);

        let tree = Tree::new();
        nic_tree(&tree, &[(30, "0\n"), (31, "0\n")]);
        let r = check(&tree, "irq_spread");
        assert_eq!(r.status, Status::Warn, "{r:?}");
        assert!(r.fix.unwrap().contains("echo f > /sys/class/net/eth0/queues/rx-0/rps_cpus"));

        tree.write("sys/devices/pci0/net/eth0/queues/rx-0/rps_cpus", "0000000e\n");
        assert_eq!(check(&tree, "irq_spread").status, Status::Pass);

        let tree = Tree::new();
        nic_tree(&tree, &[(30, "0\n"), (31, "2\n")]);
        assert_eq!(check(&tree, "irq_spread").status, Status::Pass);

        let tree = Tree::new();
        nic_tree(&tree, &[(30, "0-3\n")]);
        tree.write("proc/irq/30/effective_affinity_list", "1\n");
        assert_eq!(check(&tree, "irq_spread").status, Status::Warn, "effective affinity wins");

        let tree = Tree::new();
        nic_tree(&tree, &[(30, "0\n")]);
        tree.write("sys/devices/system/cpu/online", "0\n");
        assert_eq!(check(&tree, "irq_spread").status, Status::Pass);
    }
}
