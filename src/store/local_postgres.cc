#include "store/local_postgres.h"

#include <fcntl.h>
#include <grp.h>
#include <libpq-fe.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <thread>
#include <vector>

namespace ap::store {
namespace fs = std::filesystem;
namespace {

struct RunAs {
  bool drop = false;
  uid_t uid = 0;
  gid_t gid = 0;
};

Result<RunAs> run_as() {
  if (geteuid() != 0) return RunAs{};
  // PostgreSQL refuses to run as root: use the `postgres` system user the package creates.
  struct passwd* pw = getpwnam("postgres");
  if (!pw)
    return Error::failed_precondition(
        "running as root needs the 'postgres' system user (apt-get install postgresql-15)");
  return RunAs{true, pw->pw_uid, pw->pw_gid};
}

// Starts `argv` as a child, as the PostgreSQL user when we are root, with stdout and stderr
// appended to `log`. The child gets SIGINT (fast shutdown) if this thread dies.
Result<pid_t> spawn(const std::vector<std::string>& argv, const RunAs& as, const std::string& log,
                    bool tie_to_parent) {
  int fd = open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
  if (fd < 0) return Error::failed_precondition("cannot open " + log);
  if (as.drop && fchown(fd, as.uid, as.gid) != 0) {
    close(fd);
    return Error::failed_precondition("cannot hand " + log + " to the postgres user");
  }
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t parent = getpid();
  pid_t pid = fork();
  if (pid < 0) {
    close(fd);
    return Error::unavailable("fork failed");
  }
  if (pid == 0) {
    setpgid(0, 0);  // our own process group: a terminal's Ctrl-C reaches agentplane only
    dup2(fd, 1);
    dup2(fd, 2);
    int null = open("/dev/null", O_RDONLY);
    if (null >= 0) dup2(null, 0);
    if (as.drop) {
      if (setgroups(0, nullptr) != 0 || setgid(as.gid) != 0 || setuid(as.uid) != 0) _exit(126);
    }
    if (tie_to_parent) {
      prctl(PR_SET_PDEATHSIG, SIGINT);
      if (getppid() != parent) _exit(1);
    }
    execv(args[0], args.data());
    _exit(127);
  }
  close(fd);
  return pid;
}

std::string tail_of(const std::string& path, size_t max_bytes = 600) {
  std::ifstream in(path);
  std::string all((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (all.size() > max_bytes) all = all.substr(all.size() - max_bytes);
  return all;
}

Status make_dir_for(const std::string& dir, const RunAs& as, mode_t mode) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return Error::failed_precondition("cannot create " + dir + ": " + ec.message());
  if (chmod(dir.c_str(), mode) != 0) return Error::failed_precondition("cannot chmod " + dir);
  if (as.drop && chown(dir.c_str(), as.uid, as.gid) != 0)
    return Error::failed_precondition("cannot hand " + dir + " to the postgres user");
  return ok_status();
}

// The postgres user must be able to reach the cluster: every parent needs o+x.
Status check_traversable(const fs::path& dir, const RunAs& as) {
  if (!as.drop) return ok_status();
  for (fs::path p = dir.parent_path(); !p.empty() && p != p.root_path(); p = p.parent_path()) {
    struct stat st{};
    if (stat(p.c_str(), &st) == 0 && !(st.st_mode & S_IXOTH) && st.st_uid != as.uid)
      return Error::failed_precondition(
          p.string() + " is not reachable by the postgres user (PostgreSQL cannot run as root); "
                       "choose a folder outside it");
  }
  return ok_status();
}

// A postmaster.pid left by a crash would stop the server from starting if its pid was reused.
Status clear_stale_pid(const std::string& cluster) {
  std::string pidfile = cluster + "/postmaster.pid";
  std::ifstream in(pidfile);
  if (!in) return ok_status();
  long pid = 0;
  in >> pid;
  if (pid > 0 && kill(static_cast<pid_t>(pid), 0) == 0) {
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string name;
    comm >> name;
    if (name == "postgres" || name == "postmaster")
      return Error::failed_precondition("a PostgreSQL server (pid " + std::to_string(pid) +
                                        ") already runs on " + cluster +
                                        "; is another agentplane dev running?");
  }
  std::error_code ec;
  fs::remove(pidfile, ec);
  return ok_status();
}

}  // namespace

Result<std::string> find_postgres_bindir() {
  if (const char* d = std::getenv("AP_PG_BINDIR"); d && *d) return std::string(d);
  int best = 0;
  std::string dir;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator("/usr/lib/postgresql", ec)) {
    int v = std::atoi(e.path().filename().c_str());
    if (v >= 15 && v > best && fs::exists(e.path() / "bin/postgres") &&
        fs::exists(e.path() / "bin/initdb")) {
      best = v;
      dir = (e.path() / "bin").string();
    }
  }
  if (dir.empty())
    return Error::failed_precondition(
        "PostgreSQL server binaries (15 or newer) not found; install them with "
        "`apt-get install postgresql-15` or set AP_PG_BINDIR");
  return dir;
}

Result<std::unique_ptr<LocalPostgres>> LocalPostgres::start(const LocalPostgresOptions& o) {
  AP_ASSIGN_OR_RETURN(auto bindir, find_postgres_bindir());
  AP_ASSIGN_OR_RETURN(auto as, run_as());
  if (o.socket_dir.size() > 90)
    return Error::failed_precondition("socket folder path too long for a unix socket: " +
                                      o.socket_dir);
  std::unique_ptr<LocalPostgres> pg(new LocalPostgres());
  pg->options_ = o;
  if (pg->options_.log_file.empty())
    pg->options_.log_file = (fs::path(o.cluster_dir).parent_path() / "postgres.log").string();
  const auto& log = pg->options_.log_file;

  AP_RETURN_IF_ERROR(check_traversable(o.cluster_dir, as));
  AP_RETURN_IF_ERROR(make_dir_for(o.socket_dir, as, 0700));
  bool fresh = !fs::exists(fs::path(o.cluster_dir) / "PG_VERSION");
  if (fresh) {
    AP_RETURN_IF_ERROR(make_dir_for(o.cluster_dir, as, 0700));
    std::vector<std::string> argv = {bindir + "/initdb", "-D",         o.cluster_dir, "-U",
                                     kSuperuser,         "-A",         "trust",       "-E",
                                     "UTF8",             "--locale=C"};
    if (!o.durable) argv.push_back("--no-sync");
    AP_ASSIGN_OR_RETURN(pid_t pid, spawn(argv, as, log, false));
    int status = 0;
    waitpid(pid, &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
      return Error::failed_precondition("initdb failed; see " + log + ":\n" + tail_of(log));
  } else {
    AP_RETURN_IF_ERROR(clear_stale_pid(o.cluster_dir));
  }

  std::vector<std::string> argv = {bindir + "/postgres",
                                   "-D", o.cluster_dir,
                                   "-k", o.socket_dir,
                                   "-c", "listen_addresses=",
                                   "-c", "unix_socket_permissions=0700",
                                   "-c", "max_connections=200",
                                   // The run queue's tables churn (migration 0022): autovacuum
                                   // looks every few seconds, not every minute.
                                   "-c", "autovacuum_naptime=5s"};
  if (!o.durable) {
    for (const char* s : {"fsync=off", "synchronous_commit=off", "full_page_writes=off"}) {
      argv.push_back("-c");
      argv.push_back(s);
    }
  }
  AP_ASSIGN_OR_RETURN(pg->pid_, spawn(argv, as, log, true));

  std::string info = pg->conninfo(kSuperuser, "postgres");
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  while (PQping(info.c_str()) != PQPING_OK) {
    int status = 0;
    if (waitpid(pg->pid_, &status, WNOHANG) == pg->pid_) {
      pg->pid_ = -1;
      return Error::failed_precondition("PostgreSQL exited at start; see " + log + ":\n" +
                                        tail_of(log));
    }
    if (std::chrono::steady_clock::now() > deadline)
      return Error::deadline_exceeded("PostgreSQL did not accept connections within 30 s; see " +
                                      log);
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return pg;
}

std::string LocalPostgres::conninfo(const std::string& user, const std::string& dbname) const {
  return "host=" + options_.socket_dir + " user=" + user + " dbname=" + dbname;
}

Status LocalPostgres::stop() {
  if (pid_ <= 0) return ok_status();
  kill(pid_, SIGINT);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  int status = 0;
  while (waitpid(pid_, &status, WNOHANG) == 0) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid_, SIGQUIT);
      waitpid(pid_, &status, 0);
      pid_ = -1;
      return Error::deadline_exceeded("PostgreSQL did not stop within 30 s");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  pid_ = -1;
  return ok_status();
}

LocalPostgres::~LocalPostgres() { (void)stop(); }

}  // namespace ap::store
