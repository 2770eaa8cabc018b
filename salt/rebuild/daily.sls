{#-
  The daily rebuild, run on an operations minion by the schedule in rebuild/schedule.sls (or by hand:
  salt-call state.apply rebuild.daily). Rebuilds each stack of phoenix:rebuild:stacks (or
  phoenix:rebuild:stack) whose oldest instance is older than phoenix:rebuild:max_age (default 24h).
  Progress events go to the master as phoenix/rebuild/<group>/<stage>.
-#}
{%- set cfg = salt['pillar.get']('phoenix:rebuild', {}) %}
{%- set targets = cfg.get('stacks', []) | list %}
{%- if cfg.get('stack') %}{% do targets.append(cfg['stack']) %}{% endif %}
{%- for stack in targets %}
phoenix-rebuild-daily-{{ stack }}:
  rebuild.fresh:
    - name: {{ stack | yaml_dquote }}
    - fix_policy: {{ cfg.get('fix_policy', False) | to_bool }}
{%- endfor %}
{%- if not targets %}
phoenix-rebuild-daily-nothing:
  test.succeed_without_changes:
    - name: no stack in phoenix:rebuild:stacks; nothing to rebuild
{%- endif %}
