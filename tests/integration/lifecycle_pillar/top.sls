base:
  'i-*':
    - lifecycle_test
