{#-
  Provision one new Auto Scaling instance while AWS holds it in Pending:Wait (runs in the master):

    salt-run state.orchestrate orch.provision pillar='{"instance_id": "i-0123456789abcdef0"}'

  Started by reactor/lifecycle/launching.sls for phoenix/lifecycle/launching/<id>. Every step is a
  `lifecycle` runner that re-reads the ledger and AWS, so a forged event stops at `claim` and signals
  nothing. The steps, in order (each requires the one before):

    claim      ledger has the in-flight LAUNCHING action, AWS says Pending:Wait in its group; this run
               becomes the action's only orchestration
    minion     the engine accepted the key (identity document verified) and the minion answers
    highstate  the instance's highstate, failhard (stops at the first failed state)
    ...        more steps go here: require the previous step and add yourself to `abandon`'s onfail_any
    health     HTTP from the master through the instance's NGINX: health 200, /console 404, __debugger__ 404
    continue   CONTINUE

  At the first failure `abandon` sends ABANDON at once with the failing step's reason (event + ledger).
  A failed `claim` sends nothing: the action is not ours (forged/repeated event, or already finished).
-#}
{%- set instance_id = pillar.get('instance_id') %}
{%- set owner = 'orch-' ~ salt['random.get_str'](24, punctuation=False) %}
{%- set steps = ['phoenix-provision-minion', 'phoenix-provision-highstate', 'phoenix-provision-health'] %}

phoenix-provision-claim:
  salt.runner:
    - name: lifecycle.claim
    - instance_id: {{ instance_id | tojson }}
    - kind: launching
    - owner: {{ owner | tojson }}

phoenix-provision-minion:
  salt.runner:
    - name: lifecycle.wait_minion
    - instance_id: {{ instance_id | tojson }}
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-claim

phoenix-provision-highstate:
  salt.runner:
    - name: lifecycle.highstate
    - instance_id: {{ instance_id | tojson }}
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-minion

# steps added by later work (secrets, deployed commit, OS updates, profile swap) go here

phoenix-provision-health:
  salt.runner:
    - name: lifecycle.health_check
    - instance_id: {{ instance_id | tojson }}
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-highstate

phoenix-provision-continue:
  salt.runner:
    - name: lifecycle.complete
    - instance_id: {{ instance_id | tojson }}
    - result: CONTINUE
    - kind: launching
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-health

phoenix-provision-abandon:
  salt.runner:
    - name: lifecycle.complete
    - instance_id: {{ instance_id | tojson }}
    - result: ABANDON
    - kind: launching
    - owner: {{ owner | tojson }}
    - require:
      - salt: phoenix-provision-claim
    - onfail_any:
{%- for step in steps %}
      - salt: {{ step }}
{%- endfor %}
