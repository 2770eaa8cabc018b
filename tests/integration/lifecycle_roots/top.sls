{#- Highstate of the test instances (minion ids are instance ids): the real web role (salt/webapp, from
    the instance side) when the test pillar says lifecycle_test:mode: webapp, else the stand-in role whose
    failures the tests switch on. -#}
base:
  'i-*':
{%- if salt['pillar.get']('lifecycle_test:mode', 'ok') == 'webapp' %}
    - webapp
{%- else %}
    - lifecycle_test
{%- endif %}
