{{/* The image: GLOBAL_REGISTRY/NAME:TAG (tag: the chart's appVersion by default). */}}
{{- define "seaweedfs.image" -}}
{{- $name := .Values.global.seaweedfs.image.name -}}
{{- with .Values.global.imageRegistry }}{{ . }}/{{ end }}{{ $name }}:{{ default .Chart.AppVersion .Values.image.tag }}
{{- end -}}

{{/* One component as a StatefulSet: dict "root" $ "name" NAME "v" VALUES "args" ARGS "claims" LIST, and "s3config"
SECRET to mount the S3 identities file of that Secret at /etc/sw (the filer's -s3.config). */}}
{{- define "seaweedfs.component" -}}
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {{ .root.Release.Name }}-{{ .name }}
  labels:
    app.kubernetes.io/name: seaweedfs
    app.kubernetes.io/component: {{ .name }}
spec:
  replicas: {{ .v.replicas }}
  serviceName: {{ .root.Release.Name }}-{{ .name }}
  selector:
    matchLabels:
      app.kubernetes.io/component: {{ .name }}
  template:
    metadata:
      labels:
        app.kubernetes.io/name: seaweedfs
        app.kubernetes.io/component: {{ .name }}
    spec:
      {{- /* This chart takes nodeSelector and tolerations as YAML text. */}}
      {{- with .v.nodeSelector }}
      nodeSelector:
        {{- . | nindent 8 }}
      {{- end }}
      {{- with .v.tolerations }}
      tolerations:
        {{- . | nindent 8 }}
      {{- end }}
      containers:
        - name: seaweedfs
          image: {{ include "seaweedfs.image" .root }}
          args: {{ .args }}
          resources:
            {{- toYaml .v.resources | nindent 12 }}
          {{- if .s3config }}
          volumeMounts:
            - name: config-users
              mountPath: /etc/sw
              readOnly: true
          {{- end }}
      {{- if .s3config }}
      volumes:
        - name: config-users
          secret:
            defaultMode: 420
            secretName: {{ .s3config }}
      {{- end }}
  {{- with .claims }}
  volumeClaimTemplates:
    {{- range . }}
    {{- if eq .type "persistentVolumeClaim" }}
    - metadata:
        name: {{ default "data" .name }}
      spec:
        accessModes: ["ReadWriteOnce"]
        {{- with .storageClass }}
        storageClassName: {{ . }}
        {{- end }}
        resources:
          requests:
            storage: {{ .size }}
    {{- end }}
    {{- end }}
  {{- end }}
{{- end -}}
