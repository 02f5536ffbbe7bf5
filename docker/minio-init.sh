#!/bin/sh
# Run by the minio-init service (image minio/mc), the only place besides the
# minio server that holds the root credentials. It creates the two buckets and
# one account per consumer, each limited to its own bucket:
#
#   PIPELINES_S3_USER  the Airflow tasks         S3_BUCKET only
#   MLFLOW_S3_USER     the MLflow server (the    MLFLOW_BUCKET only
#                      artifact proxy)
#
# each allowed to list its bucket and to read, write and delete its objects,
# and nothing else (no other bucket, no bucket settings, no admin API).
#
# It runs at every `docker compose up` and can run again: a policy is replaced
# by the one built from the current bucket name, `mc admin user add` sets the
# current password, and attaching an attached policy is not an error.
# No secret goes on a command line (ps, `docker top`): mc reads the root
# password and each account's from its standard input, written there by
# printf, a shell builtin. Only shell builtins and mc: the image holds little else.
set -eu

fail() {
  printf 'minio-init: %s\n' "$*" >&2
  exit 1
}

for name in MINIO_ROOT_USER MINIO_ROOT_PASSWORD S3_BUCKET MLFLOW_BUCKET \
  PIPELINES_S3_USER PIPELINES_S3_PASSWORD MLFLOW_S3_USER MLFLOW_S3_PASSWORD; do
  eval "value=\${$name-}"
  case $value in
    '' | change-me) fail "set $name in docker/.env (it is empty or change-me)" ;;
  esac
done

# A bucket name as S3 allows it (3-63 of a-z 0-9 . -, a letter or digit at
# each end), which also keeps it from changing the policy's JSON.
# (The characters are spelled out: a range like a-z can match capitals in some locales.)
alnum=abcdefghijklmnopqrstuvwxyz0123456789
check_bucket() {
  case $2 in
    *[!$alnum.-]* | [!$alnum]* | *[!$alnum]) fail "$1=$2 is not an S3 bucket name" ;;
  esac
  [ "${#2}" -ge 3 ] && [ "${#2}" -le 63 ] || fail "$1=$2 is not an S3 bucket name (3 to 63 characters)"
}
check_bucket S3_BUCKET "$S3_BUCKET"
check_bucket MLFLOW_BUCKET "$MLFLOW_BUCKET"
[ "$S3_BUCKET" != "$MLFLOW_BUCKET" ] || fail "S3_BUCKET and MLFLOW_BUCKET must differ"
[ "$PIPELINES_S3_USER" != "$MLFLOW_S3_USER" ] || fail "PIPELINES_S3_USER and MLFLOW_S3_USER must differ"
for user in "$PIPELINES_S3_USER" "$MLFLOW_S3_USER"; do
  [ "$user" != "$MINIO_ROOT_USER" ] || fail "an account can't be MINIO_ROOT_USER ($user)"
done

# The policy of an account limited to the bucket $1.
bucket_policy() {
  printf '{
  "Version": "2012-10-17",
  "Statement": [
    {
      "Effect": "Allow",
      "Action": ["s3:GetBucketLocation", "s3:ListBucket", "s3:ListBucketMultipartUploads"],
      "Resource": ["arn:aws:s3:::%s"]
    },
    {
      "Effect": "Allow",
      "Action": ["s3:GetObject", "s3:PutObject", "s3:DeleteObject",
                 "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"],
      "Resource": ["arn:aws:s3:::%s/*"]
    }
  ]
}
' "$1" "$1"
}

# account USER PASSWORD POLICY BUCKET: the policy (re)made for the bucket, the
# user (re)made with the password, the policy attached to the user.
account() {
  bucket_policy "$4" | mc admin policy create local "$3" /dev/stdin
  printf '%s\n' "$2" | mc admin user add local "$1"
  if out=$(mc admin policy attach local "$3" --user "$1" 2>&1); then
    printf '%s\n' "$out"
  else
    case $out in
      *"already in effect"*) printf 'minio-init: policy %s already attached to %s\n' "$3" "$1" ;;
      *) fail "attaching policy $3 to $1: $out" ;;
    esac
  fi
}

# The root alias lives in this container's mc config until the script ends.
trap 'mc alias remove local >/dev/null 2>&1 || true' EXIT
printf '%s\n' "$MINIO_ROOT_PASSWORD" | mc alias set local http://minio:9000 "$MINIO_ROOT_USER"
mc mb --ignore-existing "local/$S3_BUCKET"
mc mb --ignore-existing "local/$MLFLOW_BUCKET"
account "$PIPELINES_S3_USER" "$PIPELINES_S3_PASSWORD" pipelines-bucket-rw "$S3_BUCKET"
account "$MLFLOW_S3_USER" "$MLFLOW_S3_PASSWORD" mlflow-bucket-rw "$MLFLOW_BUCKET"
