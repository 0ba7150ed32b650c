{{/* One KAI service Deployment: dict "root" $ "name" NAME "image" IMAGE "cpu" CPU "memory" MEMORY. */}}
{{- define "kai.service" -}}
{{- $g := .root.Values.global -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .name }}
  labels:
    app: {{ .name }}
    app.kubernetes.io/part-of: kai-scheduler
spec:
  replicas: 1
  selector:
    matchLabels:
      app: {{ .name }}
  template:
    metadata:
      labels:
        app: {{ .name }}
    spec:
      {{- with $g.nodeSelector }}
      nodeSelector:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      {{- with $g.tolerations }}
      tolerations:
        {{- toYaml . | nindent 8 }}
      {{- end }}
      containers:
        - name: {{ .name }}
          image: {{ $g.registry }}/{{ .image }}:{{ default .root.Chart.AppVersion $g.tag }}
          imagePullPolicy: {{ $g.imagePullPolicy }}
          {{- if .cpu }}
          resources:
            requests:
              cpu: {{ .cpu }}
              memory: {{ .memory }}
          {{- end }}
          {{- if and (eq .name "binder") $g.gpuSharing }}
          args:
            - --gpu-sharing-enabled=true
          {{- end }}
{{- end -}}
