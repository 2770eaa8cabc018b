{#- The allowlist in highstate: NGINX config deployed -> nginx_whitelist.managed -> service.running (watch).
    Every value comes from pillar `phoenix:nginx_whitelist` (see pillar.example). #}
{%- set cfg = salt['pillar.get']('phoenix:nginx_whitelist', {}) %}
{%- set maps = cfg.get('maps', '/etc/nginx/conf.d/' ~ cfg.get('name', 'app') ~ '.allowlist.conf') %}
{%- set gate = cfg.get('gate', maps.rsplit('.', 1)[0] ~ '.gate') %}

{%- if cfg.get('manage_package', True) %}
nginx-package:
  pkg.installed:
    - name: {{ cfg.get('package', 'nginx-light') }}
{%- endif %}

nginx-site-config:
  file.managed:
    - name: {{ cfg.get('site_config', '/etc/nginx/sites-enabled/' ~ cfg.get('name', 'app')) }}
    - source: {{ cfg.get('site_source', 'salt://nginx_whitelist/files/site.conf.jinja') }}
    - template: jinja
    - makedirs: True
    - context:
        maps: {{ maps }}
        gate: {{ gate }}
        listen: {{ cfg.get('listen', '80') }}
        server_name: {{ cfg.get('server_name', '_') }}
        upstream: {{ cfg.get('upstream', '127.0.0.1:8000') }}
        static_alias: {{ cfg.get('static_alias', '') }}
{%- if cfg.get('manage_package', True) %}
    - require:
      - pkg: nginx-package
{%- endif %}

nginx-whitelist:
  nginx_whitelist.managed:
    - name: {{ maps }}
    - gate: {{ gate }}
    - app: {{ cfg.get('app', 'app:app') | yaml_squote }}
    - config: {{ cfg.get('config', '/etc/nginx/nginx.conf') }}
    - upstream: {{ cfg.get('upstream', '127.0.0.1:8000') }}
{%- for key in ('python', 'cwd', 'factory', 'timeout', 'status', 'console_path', 'nginx', 'prefix', 'fast_path',
                'strict_paths', 'intercept_errors') %}
{%- if key in cfg %}
    - {{ key }}: {{ cfg[key] | json }}
{%- endif %}
{%- endfor %}
    - require:
      - file: nginx-site-config

{%- if cfg.get('manage_service', True) %}
nginx-service:
  service.running:
    - name: nginx
    - enable: True
    - reload: True
    - watch:
      - file: nginx-site-config
      - nginx_whitelist: nginx-whitelist
{%- endif %}
