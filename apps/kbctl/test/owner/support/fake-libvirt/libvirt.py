# A stand-in for the libvirt Python binding that replays a recorded libvirt state (the scenario JSON named by
# KB_FAKE_LIBVIRT): lets virt-qemu-sev-validate run its --domain code paths against the same state as the fake virsh.
import builtins
import json
import os
import socket

VIR_DOMAIN_NOSTATE = 0
VIR_DOMAIN_RUNNING = 1
VIR_DOMAIN_BLOCKED = 2
VIR_DOMAIN_PAUSED = 3
VIR_DOMAIN_SHUTDOWN = 4
VIR_DOMAIN_SHUTOFF = 5

_STATES = {"running": VIR_DOMAIN_RUNNING, "paused": VIR_DOMAIN_PAUSED, "shut off": VIR_DOMAIN_SHUTOFF}


class libvirtError(Exception):
    pass


def _scenario():
    with builtins.open(os.environ["KB_FAKE_LIBVIRT"]) as fh:
        return json.load(fh)


class _Domain:
    def __init__(self, sc, d):
        self._sc = sc
        self._d = d

    def ID(self):
        return self._d["id"] if self.isActive() else -1

    def name(self):
        return self._d["name"]

    def UUIDString(self):
        return self._d["uuid"]

    def isActive(self):
        return self._d["state"] != "shut off"

    def info(self):
        return [_STATES[self._d["state"]], 1048576, 1048576, self._d["vcpus"], 0]

    def XMLDesc(self, flags=0):
        return self._d["xml"]

    def launchSecurityInfo(self, flags=0):
        info = self._d["launchSecurityInfo"]
        if info is None:
            raise libvirtError("Unable to get launch security parameters")
        return {k: (int(v) if k != "sev-measurement" else v) for k, v in info.items()}

    def setLaunchSecurityState(self, params, flags=0):
        with builtins.open(os.path.join(self._sc["record"], "header.b64"), "w") as fh:
            fh.write(params["sev-secret-header"])
        with builtins.open(os.path.join(self._sc["record"], "secret.b64"), "w") as fh:
            fh.write(params["sev-secret"])

    def resume(self):
        with builtins.open(os.path.join(self._sc["record"], "resumed"), "w") as fh:
            fh.write("")


class _Conn:
    def __init__(self, sc):
        self._sc = sc

    def getHostname(self):
        return self._sc["hostname"] or socket.gethostname()

    def _find(self, pred, what):
        for d in self._sc["domains"]:
            if pred(d):
                return _Domain(self._sc, d)
        raise libvirtError("Domain not found: no domain with matching %s" % what)

    def lookupByID(self, i):
        return self._find(lambda d: d["id"] == i and d["state"] != "shut off", "id %d" % i)

    def lookupByUUIDString(self, u):
        return self._find(lambda d: d["uuid"] == u, "uuid '%s'" % u)

    def lookupByName(self, n):
        return self._find(lambda d: d["name"] == n, "name '%s'" % n)

    def getCapabilities(self):
        return self._sc["capabilities"]


def open(uri=None):
    return _Conn(_scenario())
