/* probe: a static program run inside imgctl containers by the integration tests.
 * It reports, as one JSON object on stdout, what the process sees from inside:
 * pid, hostname, ids and id maps, capabilities, seccomp mode, no_new_privs, mount
 * points, network devices, cgroup limits, open descriptors, and the errno of a set
 * of calls a container must not be able to make. Modes:
 *   probe                 the report
 *   probe alloc MIB       allocate and touch MIB MiB, then print "survived"
 *   probe forkbomb N      fork up to N sleeping children; print {"forked":n,"errno":e}
 *   probe burn MS         two children each spin MS ms of CPU time, then report
 *   probe touch PATH      create PATH and print its owner
 *   probe exit N          exit with status N
 *   probe sleep S         sleep S seconds (signal tests)
 *   probe fifo            start a SCHED_FIFO thread; print {"fifo":errno}
 *   probe dwrite DEV MS   O_DIRECT 4 KiB writes to DEV (or a new file) for MS ms;
 *                         {"writes":n,"errno":e}
 *   probe hold MIB S      allocate and touch MIB MiB, print "holding", sleep S s
 *   probe spin MS         print "spinning", keep one CPU busy for MS ms of wall time
 *   probe open PATH       open PATH read-write, write and read a byte;
 *                         {"open":e,"write":e,"read":e} (errno, 0 = worked)
 *   probe mknod PATH T MAJ MIN  make a node (T: c or b) and open it read-only;
 *                         {"mknod":e,"open":e}
 *   probe exe             try to open the binaries of /proc/self, /proc/1 and every
 *                         visible process for writing; list the processes seen
 * Build: gcc -static -O2 -o probe probe.c */
#define _GNU_SOURCE
#include <dirent.h>
#include <pthread.h>
#include <sys/sysmacros.h>
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static int first = 1;

static void jstr(const char *s) {
    putchar('"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') printf("\\%c", c);
        else if (c < 0x20) printf("\\u%04x", c);
        else putchar(c);
    }
    putchar('"');
}

static void key(const char *k) {
    if (!first) putchar(',');
    first = 0;
    jstr(k);
    putchar(':');
}

static void kstr(const char *k, const char *v) { key(k); jstr(v); }
static void kint(const char *k, long long v) { key(k); printf("%lld", v); }

static int slurp(const char *path, char *buf, size_t n) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) { buf[0] = 0; return -errno; }
    ssize_t r = read(fd, buf, n - 1);
    int e = errno;
    close(fd);
    if (r < 0) { buf[0] = 0; return -e; }
    buf[r] = 0;
    while (r > 0 && (buf[r - 1] == '\n' || buf[r - 1] == ' ')) buf[--r] = 0;
    return (int)r;
}

static void status_field(const char *name, char *out, size_t n) {
    static char st[8192];
    slurp("/proc/self/status", st, sizeof st);
    out[0] = 0;
    size_t l = strlen(name);
    for (char *p = st; p && *p; p = strchr(p, '\n') ? strchr(p, '\n') + 1 : NULL) {
        if (!strncmp(p, name, l) && p[l] == ':') {
            p += l + 1;
            while (*p == ' ' || *p == '\t') p++;
            size_t i = 0;
            while (p[i] && p[i] != '\n' && i + 1 < n) { out[i] = p[i]; i++; }
            out[i] = 0;
            return;
        }
    }
}

/* The first readable file of a list, as a string ("" if none). */
static void kfile(const char *k, const char **paths) {
    static char buf[4096];
    buf[0] = 0;
    for (; *paths; paths++)
        if (slurp(*paths, buf, sizeof buf) >= 0) break;
    kstr(k, buf);
}

static int err_of(long r) { return r < 0 ? errno : 0; }

static void report(void) {
    char buf[4096];
    struct utsname u;
    uname(&u);
    putchar('{');
    kint("pid", getpid());
    kint("ppid", getppid());
    kstr("hostname", u.nodename);
    kint("uid", getuid());
    kint("gid", getgid());
    kint("euid", geteuid());
    slurp("/proc/self/uid_map", buf, sizeof buf); kstr("uid_map", buf);
    slurp("/proc/self/gid_map", buf, sizeof buf); kstr("gid_map", buf);
    key("caps"); putchar('{'); first = 1;
    const char *cf[][2] = {{"CapInh", "inheritable"}, {"CapPrm", "permitted"}, {"CapEff", "effective"},
                           {"CapBnd", "bounding"}, {"CapAmb", "ambient"}};
    for (int i = 0; i < 5; i++) { status_field(cf[i][0], buf, sizeof buf); kstr(cf[i][1], buf); }
    putchar('}'); first = 0;
    status_field("Seccomp", buf, sizeof buf); kint("seccomp", atoi(buf));
    status_field("NoNewPrivs", buf, sizeof buf); kint("no_new_privs", atoi(buf));
    status_field("Cpus_allowed_list", buf, sizeof buf); kstr("cpus_allowed_list", buf);

    key("mounts"); putchar('[');
    {
        static char mi[65536];
        slurp("/proc/self/mountinfo", mi, sizeof mi);
        int f = 1;
        for (char *line = strtok(mi, "\n"); line; line = strtok(NULL, "\n")) {
            char mp[1024], fstype[128];
            /* id parent major:minor root mountpoint ... - fstype source opts */
            if (sscanf(line, "%*s %*s %*s %*s %1023s", mp) != 1) continue;
            char *dash = strstr(line, " - ");
            fstype[0] = 0;
            if (dash) sscanf(dash + 3, "%127s", fstype);
            if (!f) putchar(',');
            f = 0;
            printf("{\"path\":"); jstr(mp); printf(",\"type\":"); jstr(fstype); putchar('}');
        }
    }
    putchar(']');

    key("net_devices"); putchar('[');
    {
        static char nd[8192];
        slurp("/proc/net/dev", nd, sizeof nd);
        int f = 1, ln = 0;
        for (char *line = strtok(nd, "\n"); line; line = strtok(NULL, "\n")) {
            if (ln++ < 2) continue;
            while (*line == ' ') line++;
            char *c = strchr(line, ':');
            if (!c) continue;
            *c = 0;
            if (!f) putchar(',');
            f = 0;
            jstr(line);
        }
    }
    putchar(']');

    key("cgroup"); putchar('{'); first = 1;
    const char *mem[] = {"/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory.max", NULL};
    const char *pids[] = {"/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max", NULL};
    const char *quota[] = {"/sys/fs/cgroup/cpu/cpu.cfs_quota_us", "/sys/fs/cgroup/cpu.max", NULL};
    const char *period[] = {"/sys/fs/cgroup/cpu/cpu.cfs_period_us", NULL};
    const char *cpuset[] = {"/sys/fs/cgroup/cpuset/cpuset.cpus", "/sys/fs/cgroup/cpuset.cpus", NULL};
    const char *cpustat[] = {"/sys/fs/cgroup/cpu/cpu.stat", "/sys/fs/cgroup/cpu.stat", NULL};
    kfile("memory_limit", mem);
    kfile("pids_max", pids);
    kfile("cpu_quota", quota);
    kfile("cpu_period", period);
    kfile("cpuset_cpus", cpuset);
    kfile("cpu_stat", cpustat);
    putchar('}'); first = 0;
    slurp("/proc/self/cgroup", buf, sizeof buf); kstr("proc_self_cgroup", buf);

    key("fds"); putchar('[');
    {
        DIR *d = opendir("/proc/self/fd");
        int self = d ? dirfd(d) : -1, f = 1;
        struct dirent *e;
        while (d && (e = readdir(d))) {
            if (e->d_name[0] == '.' || atoi(e->d_name) == self) continue;
            if (!f) putchar(',');
            f = 0;
            printf("%d", atoi(e->d_name));
        }
        if (d) closedir(d);
    }
    putchar(']');

    char ns[256];
    key("namespaces"); putchar('{'); first = 1;
    const char *nss[] = {"pid", "mnt", "uts", "ipc", "net", "cgroup", "user"};
    for (int i = 0; i < 7; i++) {
        char p[64];
        snprintf(p, sizeof p, "/proc/self/ns/%s", nss[i]);
        ssize_t r = readlink(p, ns, sizeof ns - 1);
        ns[r > 0 ? r : 0] = 0;
        kstr(nss[i], ns);
    }
    putchar('}'); first = 0;

    /* Calls a default container must not be able to make: 0 means it worked. */
    key("errno"); putchar('{'); first = 1;
    pid_t c = fork();
    if (c == 0) _exit(unshare(CLONE_NEWUSER) < 0 ? errno : 0);
    int st = 0;
    waitpid(c, &st, 0);
    kint("unshare_user", WEXITSTATUS(st));
    c = fork();
    if (c == 0) _exit(unshare(CLONE_NEWNS) < 0 ? errno : 0);
    waitpid(c, &st, 0);
    kint("unshare_mount", WEXITSTATUS(st));
    mkdir("/tmp", 01777);
    mkdir("/tmp/.probe-mnt", 0755);
    long r = mount("none", "/tmp/.probe-mnt", "tmpfs", 0, NULL);
    kint("mount", err_of(r));
    if (r == 0) umount("/tmp/.probe-mnt");
    kint("keyctl", err_of(syscall(SYS_keyctl, 0 /* KEYCTL_GET_KEYRING_ID */, -3, 0)));
#if defined(__x86_64__)
    /* The same call through the 32-bit (int 0x80) and x32 entry points: a filter
     * that covers only the native ABI would let these through. In a child, as a
     * success would change the probe's namespace. */
    c = fork();
    if (c == 0) {
        long ret;
        __asm__ volatile("int $0x80" : "=a"(ret) : "a"(310 /* i386 unshare */), "b"(0x10000000) : "memory");
        _exit(ret < 0 ? (int)-ret : 0);
    }
    waitpid(c, &st, 0);
    kint("unshare_user_i386", WEXITSTATUS(st));
    c = fork();
    if (c == 0) {
        long ret = syscall(0x40000000 | 272 /* x32 unshare */, 0x10000000);
        _exit(ret < 0 ? errno : 0);
    }
    waitpid(c, &st, 0);
    kint("unshare_user_x32", WEXITSTATUS(st));
#endif
    kint("io_uring_setup", err_of(syscall(425, 1, NULL)));
    kint("umount_proc", err_of(umount2("/proc/sys", MNT_DETACH)));
    int fd = open("/tmp/.probe-chown", O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
    if (fd >= 0) close(fd);
    kint("chown", err_of(chown("/tmp/.probe-chown", 1, 1)));
    unlink("/tmp/.probe-chown");
    fd = open("/proc/sysrq-trigger", O_WRONLY | O_CLOEXEC);
    kint("sysrq_open", fd < 0 ? errno : 0);
    if (fd >= 0) close(fd);
    fd = open("/proc/sys/kernel/hostname", O_WRONLY | O_CLOEXEC);
    kint("proc_sys_write", fd < 0 ? errno : 0);
    if (fd >= 0) close(fd);
    putchar('}'); first = 0;

    /* Masked paths: bytes readable (0 when masked by /dev/null or an empty tmpfs). */
    key("masked"); putchar('{'); first = 1;
    const char *masked[] = {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug"};
    for (int i = 0; i < 4; i++) {
        int m = open(masked[i], O_RDONLY | O_CLOEXEC);
        long n = -1;
        if (m >= 0) { n = read(m, buf, sizeof buf); close(m); }
        kint(masked[i], n);
    }
    {
        DIR *d = opendir("/sys/firmware");
        int n = 0;
        struct dirent *e;
        while (d && (e = readdir(d))) if (e->d_name[0] != '.') n++;
        if (d) closedir(d);
        kint("/sys/firmware entries", n);
    }
    putchar('}'); first = 0;

    /* Reaching the host root: a classic chroot escape must end in the container's
     * own root, where the host's marker (PROBE_MARKER) does not exist. */
    const char *marker = getenv("PROBE_MARKER");
    if (marker) {
        int seen_direct = access(marker, F_OK) == 0;
        int seen_escape = -1;
        pid_t e = fork();
        if (e == 0) {
            mkdir("/tmp/.probe-jail", 0755);
            if (chroot("/tmp/.probe-jail") != 0) _exit(2);
            for (int i = 0; i < 64; i++) if (chdir("..") != 0) break;
            if (chroot(".") != 0) _exit(3);
            _exit(access(marker, F_OK) == 0 ? 1 : 0);
        }
        waitpid(e, &st, 0);
        seen_escape = WEXITSTATUS(st);
        kint("host_marker_visible", seen_direct);
        kint("host_marker_after_chroot_escape", seen_escape);
    }
    puts("}");
}

/* errno of open(path, flags), 0 when it opened (closed at once, nothing written). */
static int try_open(const char *path, int flags) {
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

/* The CVE-2019-5736 moves: the executable behind /proc/PID/exe opened for writing,
 * directly or by reopening an O_PATH descriptor through /proc/self/fd. */
static void exe_attempts(const char *exe) {
    char buf[64];
    kint("wronly", try_open(exe, O_WRONLY));
    kint("rdwr", try_open(exe, O_RDWR));
    int p = open(exe, O_PATH | O_CLOEXEC);
    if (p < 0) { kint("reopen", errno); return; }
    snprintf(buf, sizeof buf, "/proc/self/fd/%d", p);
    kint("reopen", try_open(buf, O_WRONLY));
    close(p);
}

static void exe_report(void) {
    char buf[4096], path[64];
    putchar('{');
    key("self"); putchar('{'); first = 1; exe_attempts("/proc/self/exe"); putchar('}'); first = 0;
    key("init"); putchar('{'); first = 1; exe_attempts("/proc/1/exe"); putchar('}'); first = 0;
    key("procs"); putchar('[');
    DIR *d = opendir("/proc");
    struct dirent *e;
    int f = 1;
    while (d && (e = readdir(d))) {
        int pid = atoi(e->d_name);
        if (pid <= 0) continue;
        if (!f) putchar(',');
        f = 0;
        putchar('{'); first = 1;
        kint("pid", pid);
        snprintf(path, sizeof path, "/proc/%d/exe", pid);
        ssize_t n = readlink(path, buf, sizeof buf - 1);
        buf[n > 0 ? n : 0] = 0;
        kstr("exe", buf);
        kint("wronly", try_open(path, O_WRONLY));
        snprintf(path, sizeof path, "/proc/%d/comm", pid);
        slurp(path, buf, sizeof buf);
        kstr("comm", buf);
        snprintf(path, sizeof path, "/proc/%d/cmdline", pid);
        int fd = open(path, O_RDONLY | O_CLOEXEC);
        n = fd < 0 ? 0 : read(fd, buf, sizeof buf - 1);
        if (fd >= 0) close(fd);
        for (ssize_t i = 0; i < n; i++) if (!buf[i]) buf[i] = ' ';
        buf[n > 0 ? n : 0] = 0;
        kstr("cmdline", buf);
        putchar('}');
    }
    if (d) closedir(d);
    putchar(']'); first = 0;
    puts("}");
}

static void *fifo_thread(void *arg) { (void)arg; return NULL; }

static long now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static int extra_modes(int argc, char **argv) {
    if (argc >= 2 && !strcmp(argv[1], "fifo")) {
        pthread_attr_t a;
        struct sched_param sp = { .sched_priority = 1 };
        pthread_t t;
        pthread_attr_init(&a);
        pthread_attr_setinheritsched(&a, PTHREAD_EXPLICIT_SCHED);
        pthread_attr_setschedpolicy(&a, SCHED_FIFO);
        pthread_attr_setschedparam(&a, &sp);
        int e = pthread_create(&t, &a, fifo_thread, NULL);
        if (!e) pthread_join(t, NULL);
        printf("{\"fifo\":%d}\n", e);
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "dwrite")) {
        int fd = open(argv[2], O_WRONLY | O_CREAT | O_DIRECT | O_CLOEXEC, 0644);
        long n = 0, until = now_ms() + atol(argv[3]);
        int e = fd < 0 ? errno : 0;
        void *buf = NULL;
        if (posix_memalign(&buf, 4096, 4096)) return 1;
        memset(buf, 7, 4096);
        while (!e && now_ms() < until) {
            if (pwrite(fd, buf, 4096, (n % 256) * 4096) != 4096) { e = errno; break; }
            n++;
        }
        printf("{\"writes\":%ld,\"errno\":%d}\n", n, e);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "spin")) {
        puts("spinning");
        fflush(stdout);
        long until = now_ms() + atol(argv[2]);
        volatile unsigned long x = 0;
        while (now_ms() < until) for (int i = 0; i < 100000; i++) x++;
        return 0;
    }
    if (argc >= 4 && !strcmp(argv[1], "hold")) {
        long mib = atol(argv[2]);
        for (long i = 0; i < mib; i++) {
            char *p = malloc(1 << 20);
            if (!p) { puts("malloc failed"); return 1; }
            memset(p, 1, 1 << 20);
        }
        puts("holding");
        fflush(stdout);
        sleep(atoi(argv[3]));
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "open")) {
        int fd = open(argv[2], O_RDWR | O_CLOEXEC);
        int eo = fd < 0 ? errno : 0, ew = -1, er = -1;
        char c = 0;
        if (fd >= 0) {
            ew = write(fd, "x", 1) == 1 ? 0 : errno;
            er = read(fd, &c, 1) >= 0 ? 0 : errno;
            close(fd);
        }
        printf("{\"open\":%d,\"write\":%d,\"read\":%d}\n", eo, ew, er);
        return 0;
    }
    if (argc >= 6 && !strcmp(argv[1], "mknod")) {
        mode_t t = argv[3][0] == 'b' ? S_IFBLK : S_IFCHR;
        int em = mknod(argv[2], t | 0600, makedev(atoi(argv[4]), atoi(argv[5]))) ? errno : 0;
        int fd = open(argv[2], O_RDONLY | O_NONBLOCK | O_CLOEXEC);
        int eo = fd < 0 ? errno : 0;
        if (fd >= 0) close(fd);
        printf("{\"mknod\":%d,\"open\":%d}\n", em, eo);
        return 0;
    }
    return -1;
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IOFBF, 1 << 16);
    int x = extra_modes(argc, argv);
    if (x >= 0) return x;
    if (argc >= 3 && !strcmp(argv[1], "alloc")) {
        long mib = atol(argv[2]);
        for (long i = 0; i < mib; i++) {
            char *p = malloc(1 << 20);
            if (!p) { puts("malloc failed"); return 1; }
            memset(p, 1, 1 << 20);
        }
        puts("survived");
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "forkbomb")) {
        int n = atoi(argv[2]), made = 0, e = 0;
        for (int i = 0; i < n; i++) {
            pid_t p = fork();
            if (p == 0) { sleep(30); _exit(0); }
            if (p < 0) { e = errno; break; }
            made++;
        }
        printf("{\"forked\":%d,\"errno\":%d}\n", made, e);
        fflush(stdout);
        kill(0, SIGKILL);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "burn")) {
        long ms = atol(argv[2]);
        for (int t = 0; t < 2; t++) {
            if (fork() == 0) {
                /* CPU time, not wall time: on a busy host the quota must still be hit. */
                struct timespec b;
                do { clock_gettime(CLOCK_THREAD_CPUTIME_ID, &b); }
                while (b.tv_sec * 1000 + b.tv_nsec / 1000000 < ms);
                _exit(0);
            }
        }
        while (wait(NULL) > 0) {}
        report();
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "touch")) {
        int fd = open(argv[2], O_CREAT | O_WRONLY | O_CLOEXEC, 0644);
        if (fd < 0) { perror("open"); return 1; }
        close(fd);
        struct stat s;
        stat(argv[2], &s);
        printf("{\"uid\":%d,\"gid\":%d}\n", (int)s.st_uid, (int)s.st_gid);
        return 0;
    }
    if (argc >= 3 && !strcmp(argv[1], "exit")) return atoi(argv[2]);
    if (argc >= 2 && !strcmp(argv[1], "exe")) { exe_report(); return 0; }
    if (argc >= 3 && !strcmp(argv[1], "sleep")) { sleep(atoi(argv[2])); return 0; }
    report();
    return 0;
}
