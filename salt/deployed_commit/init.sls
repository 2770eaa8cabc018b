{#-
  The application source at exactly the commit recorded in S3 (phoenix:deploy:bucket / key), fetched from
  phoenix:deploy:repository into phoenix:deploy:target and recorded in phoenix:deploy:record.

  The fetch token is the phoenix_secrets value named by phoenix:deploy:token_secret: the execution module
  reads it from pillar itself and gives it to git in its environment only, so it is in no argument, no
  rendered SLS and no state return. It exists only while the instance is being provisioned. Put this SLS
  before the role that runs the app, and `require` it.
-#}
phoenix-deployed-commit:
  deployed_commit.deployed: []
