{#-
  Every OS update at build time, in the foreground (provisioning's first highstate step).

  Production (Debian): apt-get update, apt-get dist-upgrade (all updates), unattended-upgrade (the
  security origins configured on the image), non-interactive, keeping changed config files. When
  /var/run/reboot-required appears, orch.provision reboots the instance (provision.reboot_if_required)
  and waits for its minion before the health check.

  Pillar phoenix:os_updates (pillar.example) replaces the commands, e.g. with a stand-in on a shared test
  machine that can say "reboot required" (devtools/fake_upgrade.py).
-#}
phoenix-os-updates:
  os_updates.applied: []
