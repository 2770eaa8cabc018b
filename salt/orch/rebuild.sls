{#-
  Rebuild fleets from the master (runs inside the master; progress goes to the master event bus as
  phoenix/rebuild/<group>/<stage>):

    salt-run state.orchestrate orch.rebuild pillar='{"stack": "web"}'
    salt-run state.orchestrate orch.rebuild pillar='{"stack": "web", "force": true, "strategy": "instance_refresh"}'
    salt-run state.orchestrate orch.rebuild pillar='{"stacks": ["web", "api"]}'

  Orchestrate pillar keys (each falls back to phoenix:rebuild:<key> in the master's pillar):
    stack | group | stacks (list)   what to rebuild (stacks run one after another, in order)
    max_age                          the promise: no instance older than this (default 24h); a cycle starts
                                     when the oldest instance's age + the lead time reaches it
    check_interval, check_splay,
    margin                           the lead time's parts (phoenix:rebuild, see pillar.example)
    force                            rebuild now regardless of age
    takeover                         adopt an interrupted cycle whose update still runs
    strategy                         cloudformation | instance_refresh
    fix_policy                       set the recommended stack policy when the current one is too permissive
    deadline                         stop watching (and cancel the update) after this long
  The master needs the rebuild modules: `salt-run saltutil.sync_all` after adding this repo to
  file_roots/gitfs, or `pip install phoenix-salt` on the master (loader entry point).
-#}
{%- set cfg = salt['pillar.get']('phoenix:rebuild', {}) %}
{%- set targets = pillar.get('stacks', cfg.get('stacks', [])) | list %}
{%- set single_stack = pillar.get('stack', cfg.get('stack')) %}
{%- set single_group = pillar.get('group', cfg.get('group')) %}
{%- if single_stack or single_group %}
{%-   do targets.append({'stack': single_stack, 'group': single_group}) %}
{%- endif %}
{%- if not targets %}
phoenix-rebuild-no-target:
  test.fail_without_changes:
    - name: 'orch.rebuild needs a target: pass pillar={"stack": "<name>"} (or group / stacks)'
{%- endif %}
{%- set previous = [] %}
{%- for t in targets %}
{%-   set t = t if t is mapping else {'stack': t} %}
{%-   set label = t.get('stack') or t.get('group') %}
phoenix-rebuild-{{ label }}:
  rebuild.fresh:
    - name: {{ label | yaml_dquote }}
{%-   if t.get('stack') %}
    - stack: {{ t['stack'] | yaml_dquote }}
{%-   endif %}
{%-   if t.get('group') %}
    - group: {{ t['group'] | yaml_dquote }}
{%-   endif %}
{%-   for key in ('max_age', 'strategy', 'deadline', 'poll_initial', 'poll_max', 'check_interval', 'check_splay',
                  'margin') %}
{%-     set value = pillar.get(key, cfg.get(key)) %}
{%-     if value is not none %}
    - {{ key }}: {{ value | string | yaml_dquote }}
{%-     endif %}
{%-   endfor %}
    - force: {{ pillar.get('force', False) | to_bool }}
    - takeover: {{ pillar.get('takeover', False) | to_bool }}
    - fix_policy: {{ pillar.get('fix_policy', cfg.get('fix_policy', False)) | to_bool }}
{%-   if previous %}
    - require:
      - rebuild: phoenix-rebuild-{{ previous[-1] }}
{%-   endif %}
{%-   do previous.append(label) %}
{%- endfor %}
