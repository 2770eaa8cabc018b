{#- A stand-in role for the daemon tests of the provisioning loop: an HTTP server on the instance's own
    loopback address (a real process the instance runs), and switches the tests flip through pillar
    (lifecycle_test:mode): ok | fail (a state fails) | slow (the highstate takes `seconds`) | open (the
    server answers /console with 200, as an app without its allowlist would). -#}
{%- set mode = salt['pillar.get']('lifecycle_test:mode', 'ok') %}
{%- set port = salt['pillar.get']('lifecycle_test:port', 8080) %}
{%- set script = opts['cachedir'] ~ '/lifecycle_healthd.py' %}

lifecycle-test-script:
  file.managed:
    - name: {{ script | yaml_dquote }}
    - source: salt://lifecycle_test/healthd.py

{%- if mode == 'slow' %}
lifecycle-test-slow:
  cmd.run:
    - name: sleep {{ salt['pillar.get']('lifecycle_test:seconds', 10) | int }}
{%- endif %}

{%- if mode == 'fail' %}
lifecycle-test-fails:
  test.fail_without_changes:
    - name: the test role was told to fail
{%- endif %}

lifecycle-test-server:
  cmd.run:
    - name: {{ (grains['pythonexecutable'] ~ ' ' ~ script ~ ' ' ~ grains['phoenix_private_ip'] ~ ' ' ~ port ~ ' ' ~ mode) | yaml_dquote }}
    - bg: true
    - require:
      - file: lifecycle-test-script
