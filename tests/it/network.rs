//! Bridge networking on the real kernel (root): published ports, names on a
//! user network, `--network none|container:X`, bandwidth shaping, the time
//! namespace, and nothing left behind (veth, nft chain, lease) after the
//! container ends or after `kill -9` of imgctl. docs/network.md.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{fails, have, imgctl, is_root, ok, output, require, tempdir};
use crate::sandbox::{assert_valid, validator};

fn fixture(name: &str) -> Option<String> {
    let dir = PathBuf::from(
        std::env::var("IMGCTL_TESTDATA").unwrap_or_else(|_| "/var/cache/imgctl-testdata".into()),
    )
    .join(name);
    let there = dir.join("index.json").is_file();
    require(
        there,
        &format!("fixture {} (scripts/fixtures/*.sh)", dir.display()),
    )
    .then(|| format!("oci:{}", dir.display()))
}

fn ready() -> bool {
    require(is_root(), "root (veth, bridges, nftables)")
        && require(have("nft"), "nft (nftables)")
        && require(have("tc"), "tc (iproute2)")
}

/// What container `id` left on the host: its veth, its nft chains, its leases.
fn leaks(id: &str) -> Vec<String> {
    let short = &id[..12];
    let mut out = Vec::new();
    let veth = format!("/sys/class/net/vi{short}");
    if Path::new(&veth).exists() {
        out.push(veth);
    }
    let nft = Command::new("nft")
        .args(["list", "table", "inet", "imgctl"])
        .output()
        .expect("run nft");
    let text = String::from_utf8_lossy(&nft.stdout);
    if text.contains(&format!("c-{short}")) {
        out.push(format!("nft chain c-{short}-*"));
    }
    let run =
        PathBuf::from(std::env::var("IMGCTL_RUN_DIR").unwrap_or_else(|_| "/run/imgctl".into()));
    let mut dirs = vec![run.join("ports")];
    for b in std::fs::read_dir(run.join("ipam"))
        .into_iter()
        .flatten()
        .flatten()
    {
        dirs.push(b.path());
    }
    for d in dirs {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            if std::fs::read_to_string(e.path()).is_ok_and(|s| s.contains(id)) {
                out.push(e.path().display().to_string());
            }
        }
    }
    out
}

/// [`leaks`] after the container ended. Leases and nft chains are removed
/// before its owner returns; the veth of a container whose network namespace
/// died with it is unregistered by the kernel itself, in the background,
/// moments later (docs/network.md "Teardown"): that one alone is given up to
/// 5 s to go.
fn leaks_after_exit(id: &str) -> Vec<String> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        let left = leaks(id);
        let only_veth = left.iter().all(|l| l.starts_with("/sys/class/net/"));
        if left.is_empty() || !only_veth || Instant::now() >= end {
            return left;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A port nothing listens on now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// One HTTP/1.0 GET; the whole response.
fn http_get(addr: SocketAddr, path: &str) -> std::io::Result<String> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: x\r\n\r\n")?;
    let mut body = String::new();
    s.read_to_string(&mut body)?;
    Ok(body)
}

/// GET until it answers (the container is starting), at most `within`.
fn wait_http(addr: SocketAddr, path: &str, within: Duration) -> String {
    let until = Instant::now() + within;
    loop {
        match http_get(addr, path) {
            Ok(b) if b.starts_with("HTTP/") => return b,
            r => {
                assert!(Instant::now() < until, "no answer from {addr}{path}: {r:?}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

/// The id of container `name` once it is running with its network attached.
fn wait_running(root: &Path, name: &str, child: &mut Child, within: Duration) -> String {
    let until = Instant::now() + within;
    loop {
        if let Ok(id) = std::fs::read_to_string(root.join("container-names").join(name)) {
            let state = root.join("containers").join(id.trim()).join("state.json");
            if let Ok(b) = std::fs::read(&state) {
                let v: serde_json::Value = serde_json::from_slice(&b).unwrap_or_default();
                if v["pid"].is_number() {
                    return id.trim().to_string();
                }
            }
        }
        if let Ok(Some(st)) = child.try_wait() {
            let mut err = String::new();
            if let Some(e) = child.stderr.as_mut() {
                let _ = e.read_to_string(&mut err);
            }
            panic!("container {name} ended early ({st}): {err}");
        }
        assert!(Instant::now() < until, "container {name} did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn state_of(root: &Path, id: &str) -> serde_json::Value {
    let p = root.join("containers").join(id).join("state.json");
    serde_json::from_slice(&std::fs::read(&p).expect("state.json")).expect("state JSON")
}

fn terminate(child: &mut Child) -> std::process::ExitStatus {
    // SAFETY: kill with plain integers, on our own child.
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    child.wait().expect("wait for imgctl")
}

#[test]
fn published_port_answers_on_loopback_and_on_the_container_address() {
    if !ready() {
        return;
    }
    let Some(nginx) = fixture("nginx-oci") else {
        return;
    };
    let t = tempdir();
    let port = free_port();
    let mut child = imgctl(t.path())
        .args(["run", "--rm", "--name", "web", "-p"])
        .arg(format!("{port}:80"))
        .arg(&nginx)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgctl run");
    let id = wait_running(t.path(), "web", &mut child, Duration::from_secs(180));
    let lo = wait_http(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        "/",
        Duration::from_secs(30),
    );
    assert!(lo.contains("nginx"), "{lo}");
    let state = state_of(t.path(), &id);
    assert_valid(
        &validator("container-state.schema.json"),
        &state,
        "state.json with a network",
    );
    let ip: Ipv4Addr = state["network"]["ip"].as_str().unwrap().parse().unwrap();
    assert_eq!(state["network"]["ports"][0]["host_port"], port);
    let direct = http_get(SocketAddr::from((ip, 80)), "/").unwrap();
    assert!(direct.contains("nginx"), "{direct}");
    assert!(
        !leaks(&id).is_empty(),
        "the lease and chains exist while it runs"
    );
    terminate(&mut child);
    assert_eq!(
        leaks_after_exit(&id),
        Vec::<String>::new(),
        "left behind after exit"
    );
    assert!(http_get(SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "/").is_err());
}

#[test]
fn kill_9_of_imgctl_leaves_nothing_after_the_next_command() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    let port = free_port();
    let mut child = imgctl(t.path())
        .args(["run", "--rm", "--name", "k9", "-p"])
        .arg(format!("127.0.0.1:{port}:8000"))
        .arg(&bb)
        .args(["httpd", "-f", "-p", "8000", "-h", "/etc"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgctl run");
    let id = wait_running(t.path(), "k9", &mut child, Duration::from_secs(60));
    let r = wait_http(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        "/hostname",
        Duration::from_secs(20),
    );
    assert!(r.contains(&id[..12]), "{r}");
    child.kill().unwrap();
    child.wait().unwrap();
    // The container died with its parent; its leases, chains and veth stay
    // until a command reaps them (the owner lock is free now).
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        !leaks(&id).is_empty(),
        "nothing to reap: the test proves nothing"
    );
    ok(imgctl(t.path()).args(["network", "ls", "-q"]));
    assert_eq!(leaks_after_exit(&id), Vec::<String>::new());
}

/// Removes the network when the test ends, however it ends.
struct NetGuard<'a> {
    root: &'a Path,
    name: String,
}

impl Drop for NetGuard<'_> {
    fn drop(&mut self) {
        let _ = output(imgctl(self.root).args(["network", "rm", &self.name]));
    }
}

#[test]
fn containers_on_a_user_network_reach_each_other_by_name() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    let name = format!("it-{}", std::process::id());
    let id = ok(imgctl(t.path()).args(["network", "create", &name]));
    let _guard = NetGuard {
        root: t.path(),
        name: name.clone(),
    };
    let bridge = format!("/sys/class/net/imgbr-{}", &id.trim()[..8]);
    assert!(Path::new(&bridge).exists(), "{bridge}");
    // Each serves its /etc, then fetches the other's hostname by name, then
    // stays a little so the other can fetch its own.
    let script = |peer: &str| {
        format!(
            "httpd -p 8000 -h /etc; ping -c1 -W2 {peer} >/dev/null 2>&1; \
             for i in $(seq 150); do wget -qO- http://{peer}:8000/hostname && sleep 2 && exit 0; sleep 0.1; done; exit 1"
        )
    };
    let spawn = |me: &str, host: &str, peer: &str| {
        imgctl(t.path())
            .args([
                "run",
                "--rm",
                "--name",
                me,
                "--hostname",
                host,
                "--network",
                &name,
            ])
            .arg(&bb)
            .args(["sh", "-c", &script(peer)])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn imgctl run")
    };
    let a = spawn("alpha", "host-a", "beta");
    let b = spawn("beta", "host-b", "alpha");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    for (o, want) in [(&a, "host-b"), (&b, "host-a")] {
        assert!(
            o.status.success() && String::from_utf8_lossy(&o.stdout).contains(want),
            "{}: {}{}",
            o.status,
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(imgctl(t.path()).args(["network", "inspect", &name]))).unwrap();
    assert_valid(
        &validator("network-inspect.schema.json"),
        &inspect,
        "network inspect",
    );
    assert_eq!(inspect[0]["Containers"], serde_json::json!([]));
    let def: serde_json::Value = serde_json::from_slice(
        &std::fs::read(t.path().join("networks").join(format!("{name}.json"))).unwrap(),
    )
    .unwrap();
    assert_valid(
        &validator("network.schema.json"),
        &def,
        "network definition",
    );
    ok(imgctl(t.path()).args(["network", "rm", &name]));
    assert!(!Path::new(&bridge).exists(), "bridge {bridge} left behind");
}

#[test]
fn network_rm_is_refused_while_a_container_is_attached() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    let name = format!("busy-{}", std::process::id());
    // No --subnet: the network picks a free /24 (a fixed one can clash with a
    // bridge another run left on the host).
    ok(imgctl(t.path()).args(["network", "create", &name]));
    let inspect: serde_json::Value =
        serde_json::from_str(&ok(imgctl(t.path()).args(["network", "inspect", &name]))).unwrap();
    let subnet = inspect[0]["Subnet"].as_str().unwrap().to_string();
    let first_host = format!("{}.2", subnet.rsplit_once('.').unwrap().0);
    let _guard = NetGuard {
        root: t.path(),
        name: name.clone(),
    };
    let mut child = imgctl(t.path())
        .args(["run", "--rm", "--name", "user", "--network", &name])
        .arg(&bb)
        .args(["sleep", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let id = wait_running(t.path(), "user", &mut child, Duration::from_secs(60));
    let (code, err) = fails(imgctl(t.path()).args(["network", "rm", &name]));
    assert_eq!(code, 125);
    assert!(err.contains("in use") && err.contains("user"), "{err}");
    let state = state_of(t.path(), &id);
    assert_eq!(
        state["network"]["ip"],
        first_host.as_str(),
        "subnet {subnet}"
    );
    terminate(&mut child);
    ok(imgctl(t.path()).args(["network", "rm", &name]));
}

#[test]
fn network_none_has_only_lo_and_the_default_adds_eth0() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    let none = ok(imgctl(t.path())
        .args(["run", "--rm", "--network", "none"])
        .arg(&bb)
        .args(["ls", "/sys/class/net"]));
    assert_eq!(none.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    let bridge = ok(imgctl(t.path()).args(["run", "--rm"]).arg(&bb).args([
        "sh",
        "-c",
        "ls /sys/class/net; ip route",
    ]));
    assert!(bridge.contains("eth0") && bridge.contains("lo"), "{bridge}");
    assert!(bridge.contains("default via"), "{bridge}");
}

#[test]
fn network_container_mode_shares_the_other_containers_stack() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    let mut srv = imgctl(t.path())
        .args(["run", "--rm", "--name", "srv", "--hostname", "srvhost"])
        .arg(&bb)
        .args(["sh", "-c", "httpd -p 127.0.0.1:8000 -h /etc; sleep 30"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let srv_id = wait_running(t.path(), "srv", &mut srv, Duration::from_secs(60));
    // Its loopback is srv's loopback.
    let got = ok(imgctl(t.path())
        .args(["run", "--rm", "--network", "container:srv"])
        .arg(&bb)
        .args([
            "sh",
            "-c",
            "for i in $(seq 50); do wget -qO- http://127.0.0.1:8000/hostname && exit 0; sleep 0.1; done; exit 1",
        ]));
    assert_eq!(got.trim(), "srvhost");
    let (code, err) = fails(
        imgctl(t.path())
            .args(["run", "--rm", "--network", "container:nosuch"])
            .arg(&bb)
            .arg("true"),
    );
    assert_eq!(code, 125, "{err}");
    // A joiner that outlives srv keeps srv's namespace alive: srv's veth is
    // then deleted by srv's owner (not left to the kernel, which removes it
    // only with the namespace): its lease and chains before it returns, the
    // veth by a child it leaves behind (`VethRemoval::Background`), which must
    // have done it while the joiner still holds the namespace.
    let mut joiner = imgctl(t.path())
        .args([
            "run",
            "--rm",
            "--name",
            "joiner",
            "--network",
            "container:srv",
        ])
        .arg(&bb)
        .args(["sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_running(t.path(), "joiner", &mut joiner, Duration::from_secs(60));
    assert!(Path::new(&format!("/sys/class/net/vi{}", &srv_id[..12])).exists());
    terminate(&mut srv);
    assert_eq!(
        leaks_after_exit(&srv_id),
        Vec::<String>::new(),
        "srv left behind"
    );
    assert!(
        joiner.try_wait().unwrap().is_none(),
        "the joiner (holding srv's namespace) ended before srv's veth went"
    );
    terminate(&mut joiner);
}

/// Bytes a container sends to `addr` (the gateway) and the rate seen after
/// the first half second (the token bucket's burst is gone by then).
fn measure_egress(root: &Path, bb: &str, flags: &[&str], kib: u32) -> f64 {
    let gw = gateway(root);
    let l = TcpListener::bind((gw, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    let rx = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = vec![0u8; 1 << 16];
        let mut marks: Vec<(Instant, u64)> = Vec::new();
        let mut n = 0u64;
        loop {
            let k = s.read(&mut buf).unwrap();
            if k == 0 {
                break;
            }
            n += k as u64;
            marks.push((Instant::now(), n));
        }
        marks
    });
    let cmd = format!("dd if=/dev/zero bs=1024 count={kib} 2>/dev/null | nc {gw} {port}");
    let mut c = imgctl(root);
    c.args(["run", "--rm"])
        .args(flags)
        .arg(bb)
        .args(["sh", "-c", &cmd]);
    ok(&mut c);
    let marks = rx.join().unwrap();
    let (t0, _) = marks[0];
    let (t1, n1) = *marks.last().unwrap();
    assert_eq!(n1, u64::from(kib) * 1024, "all bytes arrived");
    let from = marks
        .iter()
        .find(|(t, _)| t.duration_since(t0) >= Duration::from_millis(500))
        .copied()
        .unwrap_or(marks[0]);
    (n1 - from.1) as f64 * 8.0 / t1.duration_since(from.0).as_secs_f64()
}

fn gateway(root: &Path) -> Ipv4Addr {
    let v: serde_json::Value =
        serde_json::from_str(&ok(imgctl(root).args(["network", "inspect", "bridge"]))).unwrap();
    v[0]["Gateway"].as_str().unwrap().parse().unwrap()
}

#[test]
fn rate_out_limits_egress_within_15_percent_and_unlimited_is_5x_faster() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let _g = crate::common::sandbox::serial();
    let t = tempdir();
    let limited = measure_egress(t.path(), &bb, &["--network-rate-out", "8mbit"], 3 * 1024);
    let mbit = limited / 1e6;
    assert!(
        (6.8..=9.2).contains(&mbit),
        "--network-rate-out 8mbit measured {mbit:.2} mbit/s"
    );
    let free = measure_egress(t.path(), &bb, &[], 24 * 1024);
    assert!(
        free >= 5.0 * limited,
        "unlimited {:.1} mbit/s is not 5x the limited {mbit:.2}",
        free / 1e6
    );
    eprintln!(
        "egress: limited {mbit:.2} mbit/s, unlimited {:.1} mbit/s",
        free / 1e6
    );
}

#[test]
fn concurrent_runs_get_distinct_addresses() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    // Unpack once so the runs below overlap.
    ok(imgctl(t.path())
        .args(["run", "--rm", "--network", "none"])
        .arg(&bb)
        .arg("true"));
    let kids: Vec<Child> = (0..6)
        .map(|_| {
            imgctl(t.path())
                .args(["run", "--rm"])
                .arg(&bb)
                .args(["sh", "-c", "ip -o -4 addr show dev eth0; sleep 1"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut ips = Vec::new();
    for k in kids {
        let o = k.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&o.stdout).into_owned();
        assert!(
            o.status.success(),
            "{text}{}",
            String::from_utf8_lossy(&o.stderr)
        );
        let ip = text
            .split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_else(|| panic!("no address in {text:?}"))
            .to_string();
        ips.push(ip);
    }
    let mut uniq = ips.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), ips.len(), "duplicate addresses: {ips:?}");
}

/// An address just released is not handed out again at once (round robin,
/// as Docker's IPAM): its veth may still be unregistering, and the host's
/// neighbour cache may still point at that veth's MAC.
#[test]
fn a_released_address_is_not_handed_out_to_the_next_run() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    let addr = || -> String {
        let text = ok(imgctl(t.path())
            .args(["run", "--rm"])
            .arg(&bb)
            .args(["ip", "-o", "-4", "addr", "show", "dev", "eth0"]));
        text.split_whitespace()
            .skip_while(|w| *w != "inet")
            .nth(1)
            .unwrap_or_else(|| panic!("no address in {text:?}"))
            .to_string()
    };
    let first = addr();
    let second = addr();
    assert_ne!(first, second, "the address of the run before was reused");
    eprintln!("addresses: {first} then {second}");
}

/// The bridge keeps one MAC (the gateway's, set when it is made) while its
/// ports come and go: a bridge left to the kernel takes its lowest port's MAC
/// and changes it when that container ends, and the others then send to the
/// gateway's old MAC until their neighbour entries time out.
#[test]
fn the_bridge_keeps_its_mac_while_containers_come_and_go() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    let v: serde_json::Value =
        serde_json::from_str(&ok(imgctl(t.path()).args(["network", "inspect", "bridge"]))).unwrap();
    let bridge = v[0]["Bridge"].as_str().unwrap().to_string();
    let gw: Ipv4Addr = v[0]["Gateway"].as_str().unwrap().parse().unwrap();
    let o = gw.octets();
    let want = format!("02:42:{:02x}:{:02x}:{:02x}:{:02x}", o[0], o[1], o[2], o[3]);
    let sys = |f: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{bridge}/{f}"))
            .unwrap_or_default()
            .trim()
            .to_string()
    };
    let mut kids = Vec::new();
    for i in 0..3 {
        kids.push(
            imgctl(t.path())
                .args(["run", "--rm", "--name", &format!("mac{i}")])
                .arg(&bb)
                .args(["sh", "-c", "trap 'exit 0' TERM; sleep 30 & wait"])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let id = wait_running(
            t.path(),
            &format!("mac{i}"),
            kids.last_mut().unwrap(),
            Duration::from_secs(60),
        );
        let port = format!("/sys/class/net/vi{}", &id[..12]);
        assert!(Path::new(&port).exists(), "no port {port}");
        assert_eq!(sys("address"), want, "with {} ports", i + 1);
    }
    assert_eq!(sys("addr_assign_type"), "3", "the bridge's MAC was not set");
    for mut k in kids {
        terminate(&mut k);
        assert_eq!(sys("address"), want);
    }
}

#[test]
fn bad_network_flags_are_one_line_errors_with_125() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    for flags in [
        vec!["-p", "80"],
        vec!["-p", "0:80"],
        vec!["-p", "70000:80"],
        vec!["-p", "8080:80/sctp"],
        vec!["--network", "nosuch"],
        vec!["--network", "none", "-p", "8080:80"],
        vec!["--network-rate-out", "fast"],
        vec!["--time-offset", "realtime=5"],
    ] {
        let (code, err) = fails(
            imgctl(t.path())
                .args(["run", "--rm"])
                .args(&flags)
                .arg(&bb)
                .arg("true"),
        );
        assert_eq!(code, 125, "{flags:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{flags:?}: {err}");
        assert!(err.starts_with("imgctl: "), "{flags:?}: {err}");
    }
    let (code, err) =
        fails(imgctl(t.path()).args(["network", "create", "--subnet", "10.89.0.7/24", "x"]));
    assert_eq!(code, 125);
    assert!(err.contains("host bits"), "{err}");
}

#[test]
fn time_offset_shifts_boottime_in_a_time_namespace() {
    if !ready() {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    let host_up = || -> f64 {
        std::fs::read_to_string("/proc/uptime")
            .unwrap()
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    let before = host_up();
    let out = ok(imgctl(t.path())
        .args([
            "run",
            "--rm",
            "--network",
            "none",
            "--time-offset",
            "monotonic=3600,boottime=864000",
        ])
        .arg(&bb)
        .args([
            "sh",
            "-c",
            "cat /proc/uptime; cat /proc/self/timens_offsets",
        ]));
    let after = host_up();
    let up: f64 = out.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        up >= before + 864_000.0 && up <= after + 864_000.0,
        "uptime {up} vs host {before}..{after}: {out}"
    );
    assert!(out.contains("monotonic") && out.contains("3600"), "{out}");
    // Without the flag: the host's clock.
    let plain = ok(imgctl(t.path())
        .args(["run", "--rm", "--network", "none"])
        .arg(&bb)
        .args(["cat", "/proc/uptime"]));
    let up: f64 = plain.split_whitespace().next().unwrap().parse().unwrap();
    assert!(up < after + 60.0, "{plain}");
}

/// RUN steps default to the bridge network: their own namespace (eth0 + lo)
/// with a route out (here: an HTTP server of the host on the gateway);
/// `--network none` has only lo and no way out; `host` is the host's stack.
#[test]
fn build_run_steps_default_to_the_bridge_network() {
    if !(ready() && require(have("skopeo"), "skopeo")) {
        return;
    }
    let Some(bb) = fixture("busybox-oci") else {
        return;
    };
    let t = tempdir();
    let store = t.path().join("store");
    ok(Command::new("skopeo")
        .args(["copy", "--quiet"])
        .arg(format!("{bb}:latest"))
        .arg(format!(
            "oci:{}:docker.io/library/busybox:latest",
            store.display()
        )));
    let gw = gateway(&store);
    let server = TcpListener::bind((gw, 0)).unwrap();
    let port = server.local_addr().unwrap().port();
    let serve = std::thread::spawn(move || {
        // One answer per build that reaches it (the none build never does).
        let (mut s, _) = server.accept().unwrap();
        let mut req = [0u8; 1024];
        let _ = s.read(&mut req);
        let _ = s.write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 9\r\n\r\nfrom-host");
    });
    let ctx = t.path().join("ctx");
    std::fs::create_dir_all(&ctx).unwrap();
    std::fs::write(
        ctx.join("Buildfile"),
        format!(
            "FROM busybox\nRUN ls /sys/class/net > /nets && wget -qO /got http://{gw}:{port}/\n"
        ),
    )
    .unwrap();
    let c = ctx.to_str().unwrap();
    ok(imgctl(&store).args(["build", "--progress", "plain", "-t", "net:1", c]));
    serve.join().unwrap();
    let got = ok(imgctl(&store)
        .args(["run", "--rm", "--network", "none", "net:1"])
        .args(["sh", "-c", "cat /nets; cat /got"]));
    assert_eq!(got, "eth0\nlo\nfrom-host", "{got}");
    // none: the same step cannot get out.
    let (code, err) =
        fails(imgctl(&store).args(["build", "--no-cache", "--network", "none", "-t", "net:2", c]));
    assert_ne!(code, 0, "{err}");
}

/// `-P` publishes what the image EXPOSEs (nginx: 80/tcp) on a free host port,
/// recorded in the state.
#[test]
fn publish_all_maps_the_exposed_port_to_a_free_host_port() {
    if !ready() {
        return;
    }
    let Some(nginx) = fixture("nginx-oci") else {
        return;
    };
    let t = tempdir();
    let mut child = imgctl(t.path())
        .args(["run", "--rm", "--name", "webp", "-P"])
        .arg(&nginx)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn imgctl run");
    let id = wait_running(t.path(), "webp", &mut child, Duration::from_secs(180));
    let ports = state_of(t.path(), &id)["network"]["ports"].clone();
    assert_eq!(ports[0]["container_port"], 80, "{ports}");
    assert_eq!(ports[0]["proto"], "tcp", "{ports}");
    let port = u16::try_from(ports[0]["host_port"].as_u64().unwrap()).unwrap();
    let body = wait_http(
        SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
        "/",
        Duration::from_secs(30),
    );
    assert!(body.contains("nginx"), "{body}");
    terminate(&mut child);
    assert_eq!(leaks_after_exit(&id), Vec::<String>::new());
}
