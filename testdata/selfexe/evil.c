/* evil.so: the CVE-2019-5736 payload, as an LD_PRELOAD library. A container whose
 * command is a script starting "#!/proc/self/exe" makes the runtime execute its
 * own binary inside the container; this constructor then runs in that process
 * (whose /proc/self/exe is the runtime's file on the host) and tries to open it
 * for writing, directly and by reopening an O_PATH descriptor. It prints one JSON
 * object and exits before the runtime's main runs. Nothing is ever written: an
 * open that succeeds is the failure the test looks for.
 * With -DREEXEC it then keeps an O_PATH descriptor of the binary across an exec
 * into /bin/busybox (so that nothing executes the binary any more) and tries
 * again from the shell; it prints "reopen-after-exec: denied" or "...: OPENED".
 * Build: gcc -shared -fPIC [-DREEXEC] -o evil.so evil.c */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

static int try_open(const char *path, int flags) {
    int fd = open(path, flags | O_CLOEXEC);
    if (fd < 0) return errno;
    close(fd);
    return 0;
}

__attribute__((constructor)) static void evil(void) {
    char exe[4096], via[64];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    exe[n > 0 ? n : 0] = 0;
    int wr = try_open("/proc/self/exe", O_WRONLY);
    int rw = try_open("/proc/self/exe", O_RDWR);
    int reopen = 0;
    int p = open("/proc/self/exe", O_PATH | O_CLOEXEC);
    if (p < 0) {
        reopen = errno;
    } else {
        snprintf(via, sizeof via, "/proc/self/fd/%d", p);
        reopen = try_open(via, O_WRONLY);
        close(p);
    }
    printf("{\"exe\":\"%s\",\"pid\":%d,\"wronly\":%d,\"rdwr\":%d,\"reopen\":%d}\n", exe,
           (int)getpid(), wr, rw, reopen);
    fflush(stdout);
#ifdef REEXEC
    int keep = open("/proc/self/exe", O_PATH);
    if (keep >= 0) {
        char script[512];
        snprintf(script, sizeof script,
                 "sleep 0.3; if (: >>/proc/self/fd/%d) 2>/dev/null; then echo 'reopen-after-exec: OPENED'; "
                 "else echo 'reopen-after-exec: denied'; fi",
                 keep);
        execl("/bin/busybox", "sh", "-c", script, (char *)0);
    }
    printf("reopen-after-exec: no O_PATH descriptor (errno %d)\n", errno);
    fflush(stdout);
#endif
    _exit(0);
}
