{#- Highstate of the test instances (minion ids are instance ids). -#}
base:
  'i-*':
    - lifecycle_test
