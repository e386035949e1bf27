//! Unit tests of the runtime spec: image defaults, flags, Docker's defaults.

use oci_spec::runtime::{LinuxNamespaceType, PosixRlimitType};

use super::*;

fn rootfs() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::create_dir(d.path().join("etc")).unwrap();
    std::fs::write(
        d.path().join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nwww:x:33:33::/var/www:/bin/false\n",
    )
    .unwrap();
    d
}

fn image() -> crate::oci::RunConfig {
    crate::oci::RunConfig {
        entrypoint: Some(vec!["/entry".into()]),
        cmd: Some(vec!["default".into()]),
        env: Some(vec!["PATH=/custom".into(), "A=1".into()]),
        working_dir: Some("/work".into()),
        user: Some("www".into()),
        ..Default::default()
    }
}

fn flags() -> RunFlags {
    RunFlags {
        id: "0123456789abcdef".into(),
        ..Default::default()
    }
}

#[test]
fn image_defaults_and_overrides() {
    let r = rootfs();
    let s = runtime_spec(Some(&image()), &flags(), r.path(), vec![], None).unwrap();
    let p = s.process().as_ref().unwrap();
    assert_eq!(p.args().as_ref().unwrap(), &["/entry", "default"]);
    assert_eq!(p.user().uid(), 33);
    assert_eq!(p.cwd(), Path::new("/work"));
    let env = p.env().as_ref().unwrap();
    assert!(
        env.contains(&"PATH=/custom".to_string())
            && env.contains(&"HOSTNAME=0123456789ab".to_string())
    );
    assert_eq!(s.hostname().as_deref(), Some("0123456789ab"));

    let mut f = flags();
    f.cmd = vec!["x".into()];
    f.user = Some("0".into());
    f.env = vec!["A=2".into()];
    let s = runtime_spec(Some(&image()), &f, r.path(), vec![], None).unwrap();
    let p = s.process().as_ref().unwrap();
    assert_eq!(p.args().as_ref().unwrap(), &["/entry", "x"]);
    assert_eq!(p.user().uid(), 0);
    assert!(p.env().as_ref().unwrap().contains(&"A=2".to_string()));

    f.entrypoint = Some("/bin/sh".into());
    f.cmd = vec![];
    let s = runtime_spec(Some(&image()), &f, r.path(), vec![], None).unwrap();
    assert_eq!(
        s.process().as_ref().unwrap().args().as_ref().unwrap(),
        &["/bin/sh"]
    );

    f.entrypoint = Some(String::new());
    assert!(matches!(
        runtime_spec(Some(&image()), &f, r.path(), vec![], None),
        Err(Error::NoCommand)
    ));
}

#[test]
fn docker_security_defaults() {
    let r = rootfs();
    let mut f = flags();
    f.cmd = vec!["true".into()];
    let s = runtime_spec(None, &f, r.path(), vec![], None).unwrap();
    let l = s.linux().as_ref().unwrap();
    assert!(l
        .masked_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/kcore".to_string()));
    assert!(l
        .readonly_paths()
        .as_ref()
        .unwrap()
        .contains(&"/proc/sysrq-trigger".to_string()));
    assert!(l.seccomp().is_some());
    let caps = s
        .process()
        .as_ref()
        .unwrap()
        .capabilities()
        .as_ref()
        .unwrap();
    assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
    assert!(caps.inheritable().is_none() && caps.ambient().is_none());
    assert_eq!(
        l.resources()
            .as_ref()
            .unwrap()
            .pids()
            .as_ref()
            .unwrap()
            .limit(),
        DEFAULT_PIDS_LIMIT
    );
    let ns: Vec<_> = l
        .namespaces()
        .as_ref()
        .unwrap()
        .iter()
        .map(|n| n.typ())
        .collect();
    assert!(ns.contains(&LinuxNamespaceType::Network) && !ns.contains(&LinuxNamespaceType::User));
}

#[test]
fn cgroup_parent_is_checked() {
    let r = rootfs();
    let mut f = flags();
    f.cmd = vec!["true".into()];
    f.cgroup_parent = Some("/batch/jobs/".into());
    let s = runtime_spec(None, &f, r.path(), vec![], None).unwrap();
    let path = s.linux().as_ref().unwrap().cgroups_path().clone().unwrap();
    assert_eq!(path, PathBuf::from("/batch/jobs/0123456789abcdef"));
    for bad in ["../escape", "a/./b", "", "/"] {
        f.cgroup_parent = Some(bad.into());
        assert!(
            matches!(
                runtime_spec(None, &f, r.path(), vec![], None),
                Err(Error::BadFlag { .. })
            ),
            "{bad}"
        );
    }
}

#[test]
fn capability_arithmetic() {
    let mut f = flags();
    f.cap_drop = vec!["ALL".into()];
    f.cap_add = vec!["net_admin".into()];
    assert_eq!(capability_set(&f).unwrap(), vec!["CAP_NET_ADMIN"]);
    f.cap_drop = vec!["chown".into()];
    f.cap_add = vec![];
    let s = capability_set(&f).unwrap();
    assert_eq!(s.len(), 13);
    assert!(!s.contains(&"CAP_CHOWN".to_string()));
    f.cap_add = vec!["CAP_FLY".into()];
    assert!(capability_set(&f).is_err());
}

#[test]
fn ulimits_never_exceed_the_hard_limit() {
    let r = rlimits(&[("nofile".into(), u64::MAX, u64::MAX)]).unwrap();
    assert_eq!(r[0].hard(), host_hard_limit(PosixRlimitType::RlimitNofile));
    assert!(rlimits(&[("bogus".into(), 1, 1)]).is_err());
}

#[test]
fn unreadable_seccomp_profile_names_the_file() {
    let r = rootfs();
    let mut f = flags();
    f.cmd = vec!["true".into()];
    f.seccomp = Some(Some(PathBuf::from("/nonexistent/profile.json")));
    let e = runtime_spec(None, &f, r.path(), vec![], None)
        .unwrap_err()
        .to_string();
    assert!(e.contains("/nonexistent/profile.json"), "{e}");
}

/// Issue 8 defect: a userns slice is held by a lock, not judged by a pid. A
/// held slice is skipped; a leftover file of a dead holder (whatever pid it
/// names, in whatever PID namespace) is taken over; a released one is free.
#[test]
fn userns_slices_are_held_by_a_lock() {
    let t = tempfile::tempdir().unwrap();
    let (a, la) = allocate_userns(t.path()).unwrap();
    la.set_owner(1);
    let (b, lb) = allocate_userns(t.path()).unwrap();
    assert_eq!(b, a + 65_536, "a held slice was handed out twice");
    drop(lb);
    assert!(!t.path().join(b.to_string()).exists());
    // A file left by a killed holder: pid 1 is alive here, and still the
    // slice is free because nobody holds its lock.
    std::fs::write(t.path().join(b.to_string()), "1").unwrap();
    let (c, _lc) = allocate_userns(t.path()).unwrap();
    assert_eq!(c, b);
    drop(la);
    let (d, _ld) = allocate_userns(t.path()).unwrap();
    assert_eq!(d, a);
}

/// `start` of a `--userns=auto` container claims its own slice again: refused
/// (a conflict, naming the range) while another holder has it, granted once free.
#[test]
fn a_userns_slice_is_claimed_again_by_its_base() {
    let t = tempfile::tempdir().unwrap();
    let (a, la) = allocate_userns(t.path()).unwrap();
    let e = claim_userns(t.path(), a).unwrap_err();
    assert!(matches!(e, Error::Conflict(_)), "{e}");
    assert!(e.to_string().contains(&a.to_string()), "{e}");
    drop(la);
    let again = claim_userns(t.path(), a).unwrap();
    // Held again: allocation skips it.
    let (b, _lb) = allocate_userns(t.path()).unwrap();
    assert_ne!(b, a);
    drop(again);
    assert!(!t.path().join(a.to_string()).exists());
}
