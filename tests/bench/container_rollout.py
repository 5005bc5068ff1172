"""Benchmark: failed requests during a rollout, container_rollout against what operators do today.

Method (printed with the figures):
- One nginx + njs on loopback (tests/lab/gateway.py) in front of the rollout test app
  (lab/rollout-app, pulled from the lab registry over TLS + auth). Each service has its own gateway port:
  ours blue_green through Gateway.blue_green() (one upstream per slot, njs reads the switch file per
  request, no reload); every other row through Gateway.plain() (one upstream from an include file).
- Load (tests/lab/gateway.py Load): 4 clients x 15 req/s, from 2 s before each rollout starts to 2 s after
  it ends, in two client modes at once, 2 clients each: a new connection per request; one keep-alive
  connection per client that does not retry (a failed request counts, then the client reconnects). Failed =
  connection error, timeout or non-200. Each row runs once, all in this one run, and both modes see the same
  rollout; its starting version is set up before the window, without load.
- Rows:
  1. ours blue_green v1->v2.
  2. ours blue_green v2->v3: v3 fails its health check, the module keeps v2 serving.
  3. ours blue_green killed and re-run, in one window: v1->v2 with LLMSTACK_TEST_FAULT=switched:pause:<pidfile>
     (the module pauses right after the switch), SIGKILL of the module (as an async timeout or a lost SSH
     connection does), then the same play again: it must converge (changed, v2 serves, old slot drained).
  4. ours recreate v1->v2 on one port.
  5. anchor (a), the hand-made blue/green operators write, as a play: docker_container starts the new slot
     on the other port (pull: true), ansible.builtin.uri waits for /health 200 (retries, delay 1 s), copy
     rewrites the upstream include to the new port, `nginx -s reload`, docker_container stops the old slot.
     The live slot is kept in a fact file the play reads and writes.
  6. anchor (b), community.docker.docker_container recreating the container on one port (pull: true).
  Every stop gets STOP_SECONDS (ours drain_seconds/stop_timeout, docker_container stop_timeout).
- Keep-alive reload question: anchor (a)'s keep-alive failures against its new-connection failures.
- No-op: the same play again with nothing to change; median task time of BENCH_ROUNDS runs, ours
  (blue_green) against anchor (b).
Not a test: it prints figures and exits 0 unless setting up fails.
"""
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid

import benchlib
from benchlib import labenv, play_file, run
from gateway import Gateway, Load  # tests/lab, on sys.path through benchlib

CLIENTS, PACE = 2, 15          # per client mode: 60 requests/s in all
STOP_SECONDS = 5
NOOP_ROUNDS = int(os.environ.get("BENCH_ROUNDS", "3"))
REPO = "lab/rollout-app"
MODES = ((False, "new connection"), (True, "keep-alive, no retry"))
ROWS = (("ours blue_green v1->v2", "ours_bg"),
        ("ours blue_green v2->v3 (fails; v2 serves)", "ours_bg_fail"),
        ("ours blue_green kill + re-run v1->v2", "ours_bg_kill"),
        ("ours recreate v1->v2", "ours_rec"),
        ("anchor (a) hand-made blue/green + reload", "hand"),
        ("anchor (b) docker_container recreate", "anchor"))
METHOD = """container_rollout benchmark: failed requests through nginx (loopback) during a rollout
  load: %d clients x %d req/s in each client mode, both modes in the same window, from 2 s before each rollout
        to 2 s after it; client modes: new connection per request / one keep-alive connection per client, no
        retry. Failed = connection error, timeout, non-200.
  ours blue_green: njs reads the switch file per request (no reload); drain %ds.
  1 ours v1->v2 | 2 ours v2->v3 (v3 unhealthy) | 3 ours v1->v2 SIGKILLed right after the switch
    (LLMSTACK_TEST_FAULT=switched:pause), then the same play again, in one window
  4 ours strategy recreate v1->v2, one port, stop_timeout %ds
  5 anchor (a): docker_container new slot (pull) + uri /health until 200 + copy upstream include +
    nginx -s reload + docker_container stop old slot (stop_timeout %ds); live slot in a fact file
  6 anchor (b): docker_container recreate on one port (pull, stop_timeout %ds)""" % (
    CLIENTS, PACE, STOP_SECONDS, STOP_SECONDS, STOP_SECONDS, STOP_SECONDS)


def error_kinds(load):
    kinds = {}
    for error in load.errors:
        kind = error.split("(")[0]
        kinds[kind] = kinds.get(kind, 0) + 1
    return ", ".join("%s x%d" % kv for kv in sorted(kinds.items()))


def play_error(data):
    for index in range(len(data.get("plays", [{}])[0].get("tasks", []))):
        res = benchlib.task_result(data, index)
        if res.get("failed"):
            return " ".join(str(res.get("msg", "")).split())[:300]
    return "no output" if not data else ""


def docker_running(name):
    out = subprocess.run(["docker", "inspect", "-f", "{{.State.Running}}", name], capture_output=True, text=True,
                         check=False)
    return out.stdout.strip() == "true"


class Bench:
    def __init__(self, lab):
        self.lab = lab
        self.svc = "bench_%s" % uuid.uuid4().hex[:6]
        self.tmp = tempfile.mkdtemp(prefix="llmstack-bench-")
        os.chmod(self.tmp, 0o755)  # nginx workers (nobody) read the switch file in here
        self.docker_config = os.path.join(self.tmp, "docker-config")
        self.switch_file = os.path.join(self.tmp, self.svc + ".live")
        self.ports = dict((k, labenv.free_port()) for k in ("blue", "green", "rec", "hand_blue", "hand_green",
                                                            "anchor"))
        self.gateway = Gateway()
        self.gw = {
            "ours_bg": self.gateway.blue_green(self.svc, self.ports["blue"], self.ports["green"], self.switch_file),
            "ours_rec": self.gateway.plain(self.svc + "_rec", self.ports["rec"]),
            "hand": self.gateway.plain(self.svc + "_hand", self.ports["hand_blue"]),
            "anchor": self.gateway.plain(self.svc + "_anchor", self.ports["anchor"]),
        }
        self.background = None
        self.pid_files = []

    # ----- plays

    def ours(self, tag, strategy="blue_green"):
        args = dict(name=self.svc if strategy == "blue_green" else self.svc + "_rec", strategy=strategy,
                    image="%s:%s" % (REPO, tag), registry=self.lab["LAB_REGISTRY"],
                    registry_username=self.lab["LAB_REGISTRY_USER"], registry_password=self.lab["LAB_REGISTRY_PASSWORD"],
                    state_dir=os.path.join(self.tmp, "state"), stop_timeout=STOP_SECONDS)
        if strategy == "blue_green":
            args.update(switch_file=self.switch_file, drain_seconds=STOP_SECONDS,
                        slots={"blue": {"ports": ["127.0.0.1:%d:8000" % self.ports["blue"]]},
                               "green": {"ports": ["127.0.0.1:%d:8000" % self.ports["green"]]}})
        else:
            args.update(ports=["127.0.0.1:%d:8000" % self.ports["rec"]])
        return play_file(self.tmp, "ours-%s-%s" % (strategy, tag), [{"llmstack.deploy.container_rollout": args}])

    def login(self):
        return {"name": "Log in to the registry", "no_log": True, "community.docker.docker_login": {
            "registry_url": self.lab["LAB_REGISTRY"], "username": self.lab["LAB_REGISTRY_USER"],
            "password": self.lab["LAB_REGISTRY_PASSWORD"]}}

    def anchor(self, tag):
        container = {"name": self.svc + "-anchor", "image": "%s/%s:%s" % (self.lab["LAB_REGISTRY"], REPO, tag),
                     "pull": True, "state": "started", "restart_policy": "unless-stopped",
                     "stop_timeout": STOP_SECONDS, "ports": ["127.0.0.1:%d:8000" % self.ports["anchor"]]}
        return play_file(self.tmp, "anchor-" + tag, [self.login(), {"community.docker.docker_container": container}],
                         env={"DOCKER_CONFIG": self.docker_config})

    def hand(self, tag):
        """The hand-made blue/green: new slot, wait for health, rewrite the upstream include, reload, stop old."""
        variables = {"svc": self.svc, "image": "%s/%s:%s" % (self.lab["LAB_REGISTRY"], REPO, tag),
                     "slot_ports": {"blue": self.ports["hand_blue"], "green": self.ports["hand_green"]},
                     "live_file": os.path.join(self.tmp, "hand-live-slot"),
                     "upstream_file": self.gateway.upstream_file(self.svc + "_hand"),
                     "nginx_conf": os.path.join(self.gateway.tmp, "nginx.conf")}
        tasks = [
            {"name": "Read which slot is live", "ansible.builtin.set_fact": {
                "live_slot": "{{ lookup('ansible.builtin.file', live_file, errors='ignore') | default('', true) | trim }}"}},
            {"name": "Pick the other slot", "ansible.builtin.set_fact": {
                "new_slot": "{{ 'green' if live_slot == 'blue' else 'blue' }}"}},
            self.login(),
            {"name": "Start the new slot", "community.docker.docker_container": {
                "name": "{{ svc }}-hand-{{ new_slot }}", "image": "{{ image }}", "pull": True, "state": "started",
                "restart_policy": "unless-stopped", "ports": ["127.0.0.1:{{ slot_ports[new_slot] }}:8000"]}},
            {"name": "Wait for the new slot to be healthy", "ansible.builtin.uri": {
                "url": "http://127.0.0.1:{{ slot_ports[new_slot] }}/health", "status_code": 200},
             "register": "health", "until": "health.status == 200", "retries": 60, "delay": 1},
            {"name": "Point the upstream at the new slot", "ansible.builtin.copy": {
                "dest": "{{ upstream_file }}", "content": "server 127.0.0.1:{{ slot_ports[new_slot] }};\n",
                "mode": "0644"}},
            {"name": "Reload nginx", "ansible.builtin.command": {"argv": ["nginx", "-c", "{{ nginx_conf }}", "-s", "reload"]},
             "changed_when": True},
            {"name": "Stop the old slot", "when": "live_slot | length > 0", "community.docker.docker_container": {
                "name": "{{ svc }}-hand-{{ live_slot }}", "state": "stopped", "stop_timeout": STOP_SECONDS}},
            {"name": "Record the live slot", "ansible.builtin.copy": {
                "dest": "{{ live_file }}", "content": "{{ new_slot }}\n", "mode": "0644"}},
        ]
        return play_file(self.tmp, "hand-" + tag, tasks, env={"DOCKER_CONFIG": self.docker_config},
                         variables=variables)

    # ----- rows: (setup plays without load, action under load returning a note)

    def row(self, kind):
        """{mode: (load, note)}: one rollout under the load of both client modes."""
        setup, action = {
            "ours_bg": ([self.ours("v1")], lambda: self.rollout(self.ours("v2"))),
            "ours_bg_fail": ([self.ours("v2")], lambda: self.rollout(self.ours("v3"), expect_failure=True)),
            "ours_bg_kill": ([self.ours("v1")], self.kill_and_rerun),
            "ours_rec": ([self.ours("v1", "recreate")], lambda: self.rollout(self.ours("v2", "recreate"))),
            "hand": ([self.hand("v1")], lambda: self.rollout(self.hand("v2"))),
            "anchor": ([self.anchor("v1")], lambda: self.rollout(self.anchor("v2"))),
        }[kind]
        for path in setup:
            run(path)
        port = self.gw["ours_bg" if kind.startswith("ours_bg") else kind]
        loads = dict((mode, Load(port, keepalive=keepalive, clients=CLIENTS, pace=PACE))
                     for keepalive, mode in MODES)
        for load in loads.values():
            load.start()
        try:
            time.sleep(2)
            note = action()
            time.sleep(2)
        finally:
            for load in loads.values():
                load.stop()
        return dict((mode, (load, "; ".join(n for n in (note, error_kinds(load)) if n)))
                    for mode, load in loads.items())

    def rollout(self, path, expect_failure=False):
        wall, _tasks, data = run(path, may_fail=True)
        if benchlib.failed(data):
            return ("failed as expected" if expect_failure else "PLAY FAILED: " + play_error(data)) + \
                " (%.0f s)" % wall
        return ("SUCCEEDED, expected a failure" if expect_failure else "ok") + " (%.0f s)" % wall

    def kill_and_rerun(self):
        before = self.live_slot()
        path = self.ours("v2")
        pid_file = os.path.join(self.tmp, "pid-%s" % uuid.uuid4().hex[:6])
        self.pid_files.append(pid_file)
        self.background = benchlib.start(path, env={"LLMSTACK_TEST_FAULT": "switched:pause:" + pid_file})
        deadline = time.monotonic() + 120
        while not self.pid_in(pid_file):
            if self.background.poll() is not None or time.monotonic() > deadline:
                _wall, _tasks, data = benchlib.wait(self.background)
                self.background = None
                return "PLAY NEVER REACHED THE SWITCH: " + play_error(data)
            time.sleep(0.05)
        with open(pid_file) as f:
            os.kill(int(f.read()), signal.SIGKILL)
        os.remove(pid_file)
        _wall, _tasks, killed = benchlib.wait(self.background)
        self.background = None
        wall, _tasks, again = run(path, may_fail=True)
        rerun = benchlib.task_result(again)
        after = self.live_slot()
        notes = ["killed: %s" % ("task failed" if benchlib.failed(killed) else "NOT FAILED"),
                 "re-run: %s" % ("PLAY FAILED: " + play_error(again) if benchlib.failed(again)
                                 else "changed=%s (%.0f s)" % (rerun.get("changed"), wall)),
                 "live %s->%s" % (before, after),
                 "%s-%s %s" % (self.svc, before, "drained" if not docker_running("%s-%s" % (self.svc, before))
                               else "STILL RUNNING")]
        return ", ".join(notes)

    @staticmethod
    def pid_in(pid_file):
        try:
            with open(pid_file) as f:
                return f.read().strip()
        except OSError:
            return ""

    def live_slot(self):
        try:
            with open(self.switch_file) as f:
                return f.read().strip()[len(self.svc) + 1:]
        except OSError:
            return None

    # ----- the whole run

    def main(self):
        print(METHOD, flush=True)
        labenv.push_app_images(self.lab, ("v1", "v2", "v3"))
        self.gateway.start()
        results = {}
        for _name, kind in ROWS:
            for mode, result in self.row(kind).items():
                results[(kind, mode)] = result
        noop = {}
        for kind, path in (("ours", self.ours("v2")), ("anchor", self.anchor("v2"))):
            run(path)
            noop[kind] = statistics.median(run(path)[1][-1] for _round in range(NOOP_ROUNDS))

        for name, kind in ROWS:
            for _keepalive, mode in MODES:
                load, note = results[(kind, mode)]
                versions = " ".join("%s:%d" % kv for kv in sorted(load.versions.items()))
                print("  %-42s %-21s %-16s served %-16s %s" % (name, mode, load.figure(), versions, note))
        hand_new, hand_ka = results[("hand", MODES[0][1])][0], results[("hand", MODES[1][1])][0]
        supported = hand_ka.failed > hand_new.failed
        print("  keep-alive reload question: anchor (a) (nginx -s reload) keep-alive %s vs new connection %s: "
              "%s" % (hand_ka.figure(), hand_new.figure(),
                      "a reload dropped keep-alive requests in this run (claim supported)" if supported else
                      "no more keep-alive failures than new-connection ones in this run (claim NOT supported)"))
        print("  no-op re-run (median task time of %d): ours %.3f s   anchor (b) %.3f s   ratio ours/anchor %.2f"
              % (NOOP_ROUNDS, noop["ours"], noop["anchor"], noop["ours"] / noop["anchor"]))

    def cleanup(self):
        if self.background is not None and self.background.poll() is None:
            for pid_file in self.pid_files:  # the module it left paused (its pid file goes once killed)
                try:
                    with open(pid_file) as f:
                        os.kill(int(f.read()), signal.SIGKILL)
                except (OSError, ValueError):
                    pass
            self.background.kill()
            self.background.wait()
        self.gateway.stop()
        ids = subprocess.run(["docker", "ps", "-aq", "--filter", "name=" + self.svc], capture_output=True, text=True,
                             check=False).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f"] + ids, capture_output=True, check=False)
        shutil.rmtree(self.tmp, ignore_errors=True)


def main():
    bench = Bench(labenv.read())
    try:
        bench.main()
    finally:
        bench.cleanup()


if __name__ == "__main__":
    main()
