# phoenix:webapp on a shared test machine: each localcloud instance is a salt-minion on its own
# loopback address; nothing may touch the host's packages, users, systemd or /etc.
phoenix:
  webapp:
    under_root_dir: true        # every path below the minion's root_dir
    manage_packages: false      # nginx and flask are installed on the machine already
    manage_user: false          # run as the minion's user
    virtualenv: false           # the minion's own interpreter has flask (grain pythonexecutable)
    service_manager: script     # boot scripts the localcloud agent runs at boot, not systemd
    port: 8080                  # each instance has its own address, so one port fits all
    app_port: 8000
    nginx:
      main_config: true         # no distribution nginx.conf under the minion's root
