base:
  'i-*':
    - lifecycle_test
    - webapp
