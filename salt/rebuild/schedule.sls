{#-
  Schedule the rebuild check on this (operations) minion: every phoenix:rebuild:check_interval (default 1h)
  it applies rebuild.daily, whose rebuild.fresh starts a cycle only when the oldest instance would pass
  max_age before a cycle started at the next check could finish (see rebuild.status: schedule.due_at).
  Salt adds a fresh random splay (phoenix:rebuild:check_splay, default 5m) to every run: the rule counts it.

    salt ops-minion state.apply rebuild.schedule

  phoenix:rebuild:schedule keys: enabled (true), offline (false: write the schedule file without a running
  minion, e.g. from salt-call --local). The old keys hours/when/splay are refused: a daily run cannot keep
  the promise (a run that comes a little early does nothing, and the fleet then ages to about 48 h).
  Master-side alternative (no ops minion): in the master config
    schedule:
      phoenix-rebuild-check:
        function: state.orchestrate
        args: [orch.rebuild]
        kwargs: {pillar: {stacks: [web]}}
        seconds: 3600
        splay: 300
-#}
{%- set cfg = salt['pillar.get']('phoenix:rebuild', {}) %}
{%- set sched = cfg.get('schedule', {}) %}
{%- set old_keys = [] %}
{%- for key in ('hours', 'when', 'splay') if key in sched %}{% do old_keys.append(key) %}{% endfor %}
{%- if old_keys %}
phoenix-rebuild-schedule-settings:
  test.fail_without_changes:
    - comment: >-
        phoenix:rebuild:schedule:{{ old_keys | join(', ') }} is no longer used: the check runs every
        phoenix:rebuild:check_interval (default 1h) with phoenix:rebuild:check_splay (default 5m); move or
        remove the key(s). Nothing was scheduled.
{%- else %}
{%-   set interval = salt['rebuild.seconds'](cfg.get('check_interval', '1h'), 'phoenix:rebuild:check_interval') %}
{%-   set splay = salt['rebuild.seconds'](cfg.get('check_splay', '5m'), 'phoenix:rebuild:check_splay') %}
phoenix-rebuild-daily:
{%-   if sched.get('enabled', True) | to_bool %}
  schedule.present:
    - function: state.sls
    - job_args:
      - rebuild.daily
    - seconds: {{ interval | int }}
    - splay: {{ splay | int }}
    - maxrunning: 1
    - return_job: False
    - persist: True
    - offline: {{ sched.get('offline', False) | to_bool }}
{%-   else %}
  schedule.absent:
    - offline: {{ sched.get('offline', False) | to_bool }}
{%-   endif %}
{%- endif %}
