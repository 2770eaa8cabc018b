{#-
  Schedule the daily rebuild on this (operations) minion: every phoenix:rebuild:schedule:hours hours
  (default 24) it applies rebuild.daily, which rebuilds only fleets older than max_age.

    salt ops-minion state.apply rebuild.schedule

  phoenix:rebuild:schedule keys: hours (24), splay (seconds, 900), when (e.g. "03:00"; needs
  python-dateutil, replaces hours), enabled (true), offline (false: write the schedule file without a
  running minion, e.g. from salt-call --local).
  Master-side alternative (no ops minion): in the master config
    schedule:
      phoenix-rebuild-daily:
        function: state.orchestrate
        args: [orch.rebuild]
        kwargs: {pillar: {stacks: [web]}}
        hours: 24
-#}
{%- set sched = salt['pillar.get']('phoenix:rebuild:schedule', {}) %}
phoenix-rebuild-daily:
{%- if sched.get('enabled', True) | to_bool %}
  schedule.present:
    - function: state.sls
    - job_args:
      - rebuild.daily
{%-   if sched.get('when') %}
    - when: {{ sched['when'] | yaml_dquote }}
{%-   else %}
    - hours: {{ sched.get('hours', 24) | int }}
{%-   endif %}
    - splay: {{ sched.get('splay', 900) | int }}
    - return_job: False
    - persist: True
    - offline: {{ sched.get('offline', False) | to_bool }}
{%- else %}
  schedule.absent:
    - offline: {{ sched.get('offline', False) | to_bool }}
{%- endif %}
