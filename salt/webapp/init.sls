{#- The web role of a Phoenix instance (its highstate): the sample Flask app with the Werkzeug debugger on,
    listening on the instance's private IP, behind NGINX whose allowlist serves only the app's routes.

    Order (as salt/nginx_whitelist/init.sls): app deployed and running -> NGINX config deployed ->
    nginx_whitelist.managed -> NGINX started / reloaded (watch).

    Every value comes from pillar `phoenix:webapp` (see pillar.example). The defaults are production's:
    Debian packages, a virtualenv, systemd services, a system user. A shared test machine turns those
    OS-level steps off (`manage_packages`, `manage_user`, `virtualenv: false`), runs the services with
    boot scripts instead of systemd (`service_manager: script`) and keeps every path under the minion's
    root_dir (`under_root_dir: true`). #}
{%- set cfg = salt['pillar.get']('phoenix:webapp', {}) %}
{%- set ngx = cfg.get('nginx', {}) %}
{%- set name = cfg.get('name', 'webapp') %}
{%- set root = salt['config.get']('root_dir', '/').rstrip('/') if cfg.get('under_root_dir', False) else '' %}
{%- set address = cfg.get('address') or salt['grains.get']('phoenix_private_ip') or (salt['grains.get']('fqdn_ip4') or ['127.0.0.1'])[0] %}
{%- set port = cfg.get('port', 80) %}
{%- set app_port = cfg.get('app_port', 8000) %}
{%- set from_deploy = cfg.get('source', 'salt') == 'deploy' %}
{%- set deploy_target = (salt['pillar.get']('phoenix:deploy:target') or '') | string %}
{#- a relative phoenix:deploy:target is under the minion's root_dir, as deployed_commit resolves it #}
{%- if deploy_target and not deploy_target.startswith('/') %}
{%- set deploy_target = (opts.get('root_dir') or '/').rstrip('/') ~ '/' ~ deploy_target %}
{%- endif %}
{%- set app_dir = deploy_target if from_deploy else root ~ cfg.get('app_dir', '/srv/' ~ name) %}
{%- set app_spec = cfg.get('app', 'webapp_app:create_app()') %}
{%- set runner_dir = root ~ cfg.get('runner_dir', '/usr/local/lib/' ~ name) %}
{%- set code = {'deployed_commit': 'phoenix-deployed-commit'} if from_deploy else {'file': 'webapp-app-files'} %}
{%- set virtualenv = cfg.get('virtualenv', True) %}
{%- set venv = runner_dir ~ '/venv' %}
{%- set python = cfg.get('python') or (venv ~ '/bin/python' if virtualenv else salt['grains.get']('pythonexecutable')) %}
{%- set service_manager = cfg.get('service_manager', 'systemd') %}
{%- set manage_packages = cfg.get('manage_packages', True) %}
{%- set manage_user = cfg.get('manage_user', True) %}
{%- set user = cfg.get('user', name) %}
{%- set debugger = cfg.get('debugger', True) %}
{%- set nginx_bin = ngx.get('binary', 'nginx') %}
{%- set nginx_conf = root ~ ngx.get('config', '/etc/nginx/nginx.conf') %}
{%- set nginx_prefix = root ~ ngx.get('prefix', '/etc/nginx') %}
{%- set sites_dir = root ~ ngx.get('sites_dir', '/etc/nginx/sites-enabled') %}
{%- set site = sites_dir ~ '/' ~ name %}
{%- set maps = root ~ ngx.get('allowlist_dir', '/etc/nginx/phoenix') ~ '/' ~ name ~ '.allowlist.conf' %}
{%- set gate = maps.rsplit('.', 1)[0] ~ '.gate' %}
{#- the allowlist is not in conf.d: Debian's nginx.conf includes conf.d/*.conf, and the site includes it #}
{%- set boot_dir = root ~ cfg.get('boot_dir', '/etc/localcloud/boot.d') %}
{%- set log_dir = root ~ '/var/log/' ~ name %}
{%- set run_dir = root ~ '/run/' ~ name %}
{%- set command = [python, runner_dir ~ '/serve.py', '--host', address, '--port', app_port, '--instance', grains['id'], '--app-dir', app_dir, '--app', app_spec] + ([] if debugger else ['--no-debugger']) + (['--commit-header', cfg['commit_header']] if cfg.get('commit_header') else []) %}
{%- set command_line = command | map('string') | map('quote') | join(' ') %}
{%- set nginx_argv = [nginx_bin, '-p', nginx_prefix, '-c', nginx_conf] | map('quote') | join(' ') %}

{%- if service_manager not in ('systemd', 'script') %}
webapp-settings:
  test.fail_without_changes:
    - name: "pillar phoenix:webapp:service_manager is {{ service_manager }}: use systemd (production) or script (a host without an init system, such as a localcloud test instance)"
{%- elif cfg.get('source', 'salt') not in ('salt', 'deploy') %}
webapp-settings:
  test.fail_without_changes:
    - name: "pillar phoenix:webapp:source is {{ cfg.get('source') }}: use salt (the sample app from salt://webapp/files/app) or deploy (the checkout at phoenix:deploy:target)"
{%- elif from_deploy and not deploy_target %}
webapp-settings:
  test.fail_without_changes:
    - name: "pillar phoenix:webapp:source is deploy but phoenix:deploy:target is not set: set it to the checkout's directory"
{%- else %}
{%- if from_deploy %}

include:
  - deployed_commit
{%- endif %}

{%- if manage_packages %}
webapp-packages:
  pkg.installed:
    - pkgs: {{ cfg.get('packages', ['nginx-light', 'python3-venv']) | json }}
{%- endif %}

{%- if manage_user %}
webapp-user:
  user.present:
    - name: {{ user }}
    - system: True
    - home: {{ app_dir }}
    - createhome: False
    - shell: /usr/sbin/nologin
{%- endif %}

{#- serve.py runs the app (from this SLS's files, or from the deployed checkout) #}
webapp-runner:
  file.managed:
    - name: {{ runner_dir }}/serve.py
    - source: salt://webapp/files/app/serve.py
    - makedirs: True
{%- if not from_deploy %}

webapp-app-files:
  file.recurse:
    - name: {{ app_dir }}
    - source: salt://webapp/files/app
    - include_pat: '*.py'
    - makedirs: True
    - clean: False
{%- endif %}

webapp-dirs:
  file.directory:
    - names:
      - {{ log_dir }}
      - {{ run_dir }}
      - {{ maps.rsplit('/', 1)[0] }}
    - makedirs: True

{%- if virtualenv %}
webapp-virtualenv:
  cmd.run:
    - name: {{ cfg.get('venv_python', '/usr/bin/python3') | quote }} -m venv {{ venv | quote }}
    - creates: {{ venv }}/bin/python
    - require:
      - file: webapp-runner
{%- if manage_packages %}
      - pkg: webapp-packages
{%- endif %}

webapp-requirements:
  pip.installed:
    - pkgs: {{ cfg.get('requirements', ['flask>=3.0']) | json }}
    - bin_env: {{ venv }}
    - require:
      - cmd: webapp-virtualenv
{%- endif %}

{#- ---------------------------------------------------------------- the app, listening on the private IP #}
{%- if service_manager == 'systemd' %}
webapp-app-unit:
  file.managed:
    - name: /etc/systemd/system/{{ name }}.service
    - source: salt://webapp/files/webapp.service.jinja
    - template: jinja
    - context:
        name: {{ name }}
        user: {{ user }}
        app_dir: {{ app_dir }}
        command: {{ command_line | json }}

webapp-app:
  service.running:
    - name: {{ name }}
    - enable: True
    - watch:
      - file: webapp-app-unit
      - file: webapp-runner
      - {{ code | json }}
{%- if virtualenv %}
      - pip: webapp-requirements
{%- endif %}
{%- else %}
{%- set app_script = boot_dir ~ '/50-' ~ name ~ '-app' %}
webapp-app-script:
  file.managed:
    - name: {{ app_script }}
    - source: salt://webapp/files/service.sh.jinja
    - template: jinja
    - mode: '0755'
    - makedirs: True
    - context:
        name: {{ name }} app
        pidfile: {{ run_dir }}/app.pid
        host: {{ address }}
        port: {{ app_port }}
        log: {{ log_dir }}/app.log
        start: {{ ('setsid ' ~ command_line ~ ' >> ' ~ (log_dir ~ '/app.log') | quote ~ ' 2>&1 < /dev/null & echo $! > "$PIDFILE"') | json }}
        reload: 'stop && start'

webapp-app-restart:
  cmd.run:
    - name: {{ app_script | quote }} restart
    - onchanges:
      - {{ code | json }}
      - file: webapp-runner
      - file: webapp-app-script
{%- if virtualenv %}
      - pip: webapp-requirements
{%- endif %}
    - require:
      - file: webapp-dirs

webapp-app:
  cmd.run:
    - name: {{ app_script | quote }} start
    - unless: {{ app_script | quote }} status
    - require:
      - cmd: webapp-app-restart
{%- endif %}

{#- ---------------------------------------------------------------- NGINX: config -> allowlist -> service #}
{%- if ngx.get('main_config', False) %}
webapp-nginx-main-config:
  file.managed:
    - name: {{ nginx_conf }}
    - source: salt://webapp/files/nginx.conf.jinja
    - template: jinja
    - makedirs: True
    - context:
        root: {{ root or '/' }}
        run_as_root: {{ grains.get('uid', -1) == 0 }}
        pidfile: {{ run_dir }}/nginx.pid
        log_dir: {{ log_dir }}
        temp_dir: {{ root }}/var/lib/{{ name }}/nginx
        sites_dir: {{ sites_dir }}
    - require_in:
      - file: webapp-nginx-site

webapp-nginx-temp:
  file.directory:
    - name: {{ root }}/var/lib/{{ name }}/nginx
    - makedirs: True
    - require_in:
      - file: webapp-nginx-site
{%- endif %}

webapp-nginx-site:
  file.managed:
    - name: {{ site }}
    - source: salt://nginx_whitelist/files/site.conf.jinja
    - template: jinja
    - makedirs: True
    - context:
        maps: {{ maps }}
        gate: {{ gate }}
        listen: {{ address }}:{{ port }}
        server_name: {{ cfg.get('server_name', '_') | json }}
        upstream: {{ address }}:{{ app_port }}
        static_alias: ''
    - require:
      - file: webapp-dirs
{%- if manage_packages %}
      - pkg: webapp-packages
{%- endif %}

webapp-allowlist:
  nginx_whitelist.managed:
    - name: {{ maps }}
    - gate: {{ gate }}
    - app: {{ app_spec | json }}
    - python: {{ python }}
    - cwd: {{ app_dir }}
    - config: {{ nginx_conf }}
    - upstream: {{ address }}:{{ app_port }}
    - nginx: {{ nginx_bin }}
    - prefix: {{ nginx_prefix }}
{%- for key in ('status', 'fast_path', 'timeout') %}
{%- if key in cfg %}
    - {{ key }}: {{ cfg[key] | json }}
{%- endif %}
{%- endfor %}
    - require:
      - file: webapp-nginx-site
      - {{ code | json }}
      - file: webapp-dirs
{%- if virtualenv %}
      - pip: webapp-requirements
{%- endif %}

{%- if service_manager == 'systemd' %}
webapp-nginx:
  service.running:
    - name: nginx
    - enable: True
    - reload: True
    - watch:
      - file: webapp-nginx-site
      - nginx_whitelist: webapp-allowlist
{%- else %}
{%- set nginx_script = boot_dir ~ '/60-' ~ name ~ '-nginx' %}
webapp-nginx-script:
  file.managed:
    - name: {{ nginx_script }}
    - source: salt://webapp/files/service.sh.jinja
    - template: jinja
    - mode: '0755'
    - makedirs: True
    - context:
        name: {{ name }} nginx
        pidfile: {{ run_dir }}/nginx.pid
        host: {{ address }}
        port: {{ port }}
        log: {{ log_dir }}/error.log
        start: {{ (nginx_argv ~ ' < /dev/null') | json }}
        reload: {{ (nginx_argv ~ ' -s reload') | json }}

webapp-nginx-reload:
  cmd.run:
    - name: {{ nginx_script | quote }} reload
    - onchanges:
      - file: webapp-nginx-site
      - nginx_whitelist: webapp-allowlist
      - file: webapp-nginx-script
{%- if ngx.get('main_config', False) %}
      - file: webapp-nginx-main-config
{%- endif %}

webapp-nginx:
  cmd.run:
    - name: {{ nginx_script | quote }} start
    - unless: {{ nginx_script | quote }} status
    - require:
      - cmd: webapp-nginx-reload
      - cmd: webapp-app
{%- endif %}
{%- endif %}
