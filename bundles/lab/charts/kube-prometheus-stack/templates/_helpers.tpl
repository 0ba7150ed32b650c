{{/* REGISTRY/REPOSITORY:TAG of a split image value (`image`); the tag defaults to `tag`. */}}
{{- define "lab.image" -}}
{{ .image.registry }}/{{ .image.repository }}:{{ default .tag .image.tag }}
{{- end -}}

{{/* nodeSelector, tolerations and resources of a pod spec from one values section. */}}
{{- define "lab.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}
