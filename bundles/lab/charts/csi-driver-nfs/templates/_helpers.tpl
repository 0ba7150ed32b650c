{{/* A sidecar image: dict "root" $ "image" .Values.image.X. */}}
{{- define "nfs.sidecar" -}}
{{ .root.Values.image.baseRepo }}{{ .image.repository }}:{{ .image.tag }}
{{- end -}}
